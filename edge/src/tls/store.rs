//! Writing certificate files safely: directories 0700, private keys 0600
//! from their first byte, every file written atomically (a temporary file
//! in the same directory, synced, then renamed over the target), so a
//! reader — the edge's certificate watcher, a kubelet, a client fetching
//! the bundle — never sees half a file; and nothing overwritten unless
//! asked to.

use crate::tls::TlsError;
use std::{
    fs::{self, OpenOptions},
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

/// Mode of private keys.
pub const KEY_MODE: u32 = 0o600;
/// Mode of certificates and bundles.
pub const CERT_MODE: u32 = 0o644;
/// Mode of directories holding keys.
pub const DIR_MODE: u32 = 0o700;

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> TlsError + 'a {
    move |source| TlsError::File {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Creates `dir` (and its parents) with mode 0700; an existing directory
/// is tightened to 0700.
pub fn private_dir(dir: &Path) -> Result<(), TlsError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(io_err("cannot create directory", dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
        .map_err(io_err("cannot set the mode of", dir))
}

/// The temporary name `path` is written under before the rename: hidden,
/// in the same directory (a rename is atomic only within one file system).
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes `contents` to `path` with `mode`, atomically.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let tmp = temp_path(path);
    let _ = fs::remove_file(&tmp);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have narrowed `mode`; a key must never be wider.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()
    })();
    if let Err(source) = written {
        let _ = fs::remove_file(&tmp);
        return Err(TlsError::File {
            action: "cannot write",
            path: tmp,
            source,
        });
    }
    fs::rename(&tmp, path).map_err(|source| {
        let _ = fs::remove_file(&tmp);
        TlsError::File {
            action: "cannot replace",
            path: path.to_owned(),
            source,
        }
    })?;
    // Make the rename itself durable; failure here loses nothing now.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(dir) = fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Writes a private key (mode 0600), atomically.
pub fn write_key(path: &Path, pem: &str) -> Result<(), TlsError> {
    write_atomic(path, pem.as_bytes(), KEY_MODE)
}

/// Writes a certificate or bundle (mode 0644), atomically.
pub fn write_cert(path: &Path, pem: &str) -> Result<(), TlsError> {
    write_atomic(path, pem.as_bytes(), CERT_MODE)
}

/// Reads a UTF-8 file, naming it on error.
pub fn read(path: &Path) -> Result<String, TlsError> {
    fs::read_to_string(path).map_err(io_err("cannot read", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("meta").permissions().mode() & 0o777
    }

    #[test]
    fn modes_atomic_replace_and_no_leftovers() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("a/ca");
        private_dir(&dir).expect("dir");
        assert_eq!(mode(&dir), 0o700);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        private_dir(&dir).expect("again");
        assert_eq!(mode(&dir), 0o700, "tightened");
        let key = dir.join("x.key");
        write_key(&key, "one").expect("write");
        assert_eq!(mode(&key), 0o600);
        write_key(&key, "two").expect("replace");
        assert_eq!(fs::read_to_string(&key).expect("read"), "two");
        let crt = dir.join("x.crt");
        write_cert(&crt, "cert").expect("cert");
        assert_eq!(mode(&crt), 0o644);
        let names: Vec<_> = fs::read_dir(&dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temporary files left: {names:?}");
    }
}
