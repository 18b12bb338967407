//! `scripts/dev` and the CLI share one state directory: a token made with
//! `vibectl-edge generate-token` (no flags, the default state dir, as
//! `cargo run -p vibectl-edge -- generate-token` makes it) works against the
//! dev script's edge. The script runs with `BIN_DIR` (the binaries the
//! suite built, no second build) on free loopback ports, the core on its
//! default Unix socket in the state directory (0700; the socket 0660).

use crate::journey_support::{Home, Server, profile_dir};
use std::path::PathBuf;
use tonic::Request;
use vibectl_proto::GetServerInfoRequest;

/// A loopback port free right now (the script needs fixed addresses).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[tokio::test]
async fn a_generate_token_token_works_with_the_dev_scripts_edge() {
    let home = Home::new();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/dev");
    let (edge, admin) = (free_port(), free_port());
    let mut command = home.command(&PathBuf::from("bash"));
    command
        .arg(&script)
        .env("BIN_DIR", profile_dir())
        .env("EDGE_LISTEN", format!("127.0.0.1:{edge}"))
        .env_remove("CORE_LISTEN")
        .env("ADMIN_LISTEN", format!("127.0.0.1:{admin}"));
    let dev = Server::start(command, home.path().join("dev.log"));
    dev.port_after("vibectl LLM proxy is running (edge").await;
    let state = home.state_dir();
    assert!(
        dev.log()
            .contains(&format!("state directory: {}", state.display())),
        "printed at start, the CLI's default:\n{}",
        dev.log()
    );
    let socket = state.join("core.sock");
    assert!(
        dev.log()
            .contains(&format!("-> core unix:{}", socket.display())),
        "the edge reaches the core over the socket in the state directory:\n{}",
        dev.log()
    );
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let meta = std::fs::symlink_metadata(&socket).expect("the core's socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    let dir_mode = std::fs::metadata(&state)
        .expect("state")
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    // The CLI with no state-dir flag or variable: the same directory.
    let token = home.token("cli-user", &[]).await;
    let mut client = home.grpc(edge).await;
    let jwt = std::fs::read_to_string(&token).expect("token");
    let mut request = Request::new(GetServerInfoRequest {});
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", jwt.trim()).parse().expect("ascii"),
    );
    let info = client
        .get_server_info(request)
        .await
        .expect("the dev edge accepts the CLI's token")
        .into_inner();
    assert_eq!(info.server_version, "0.11.6");
    dev.terminate().await;
}
