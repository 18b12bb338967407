//! The core's serving side, whatever the model: gRPC health, the Unix
//! socket listener (a stale socket replaced, a regular file refused, the
//! socket removed at shutdown) and server reflection (v1 and v1alpha). The
//! real `serve` runs in-process with the `echo` configuration of
//! [`crate::core_echo`].

use crate::core_echo::echo_config;
use crate::support::{Core, WAIT, answer, request, success};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

#[tokio::test]
async fn health_answers_serving() {
    let core = Core::start(echo_config("")).await;
    let mut health = HealthClient::new(core.channel.clone());
    for service in ["", vibectl_proto::SERVICE_NAME] {
        let resp = answer(health.check(HealthCheckRequest {
            service: service.to_owned(),
        }))
        .await;
        assert_eq!(resp.status(), ServingStatus::Serving, "service {service:?}");
    }
    core.stop().await;
}

#[tokio::test]
async fn unix_socket_listener_serves_and_is_removed_at_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("core.sock");
    // A stale socket file from an earlier run is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("stale socket"));
    let core = Core::start_on(&format!("unix:{}", path.display()), echo_config("")).await;
    assert_eq!(core.address, format!("unix:{}", path.display()));
    let resp = core
        .execute(request(Some("echo"), &[], &["over a socket"], "u"))
        .await;
    let ok = success(resp);
    assert_eq!(ok.response_text, "over a socket");
    core.stop().await;
    assert!(!path.exists(), "socket file removed at shutdown");
}

#[tokio::test]
async fn binding_over_a_regular_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("not-a-socket");
    std::fs::write(&path, "data").expect("write");
    let err = vibectl_core::CoreListener::bind(&format!("unix:{}", path.display()))
        .await
        .expect_err("must refuse");
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).expect("still there"), "data");
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_the_services() {
    use tonic_reflection::pb::{v1, v1alpha};
    let core = Core::start(echo_config("")).await;

    let mut client =
        v1::server_reflection_client::ServerReflectionClient::new(core.channel.clone());
    let req = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut answers = answer(client.server_reflection_info(futures::stream::iter([req]))).await;
    let reply = tokio::time::timeout(WAIT, answers.message())
        .await
        .expect("in time")
        .expect("OK")
        .expect("one answer");
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        reply.message_response
    else {
        panic!("{reply:?}");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&vibectl_proto::SERVICE_NAME), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");

    let mut client =
        v1alpha::server_reflection_client::ServerReflectionClient::new(core.channel.clone());
    let req = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                vibectl_proto::SERVICE_NAME.to_owned(),
            ),
        ),
    };
    let mut answers = answer(client.server_reflection_info(futures::stream::iter([req]))).await;
    let reply = tokio::time::timeout(WAIT, answers.message())
        .await
        .expect("in time")
        .expect("OK")
        .expect("one answer");
    assert!(
        matches!(
            reply.message_response,
            Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(_))
        ),
        "{reply:?}"
    );
    core.stop().await;
}
