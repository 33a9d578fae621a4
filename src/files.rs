//! Files gatehouse writes itself (a created certificate key, a JWT secret
//! file): private to the user it runs as.

use std::io::Write as _;
use std::path::Path;

/// Creates (or truncates) `path` with mode 0600 and writes `data`, synced
/// to disk before returning.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(data)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_private_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("secret");
        write_private(&path, b"first").expect("write");
        write_private(&path, b"2nd").expect("rewrite");
        assert_eq!(std::fs::read(&path).expect("read"), b"2nd");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
