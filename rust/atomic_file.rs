//! Files that appear under their name only when complete.
//!
//! [`AtomicFile`] writes to an anonymous file in the target's directory and gives it its name
//! only in [`AtomicFile::commit`]. On Linux the anonymous file is made with `O_TMPFILE`: it has no
//! name at all while being written, so an error, a panic, Ctrl-C or even `kill -9` leaves nothing
//! behind (the kernel frees the inode when the last descriptor closes). `commit` links it under a
//! hidden temporary name and renames that over the target, so an existing target is replaced in
//! one step and never seen half-written. Where `O_TMPFILE` is unavailable (other systems, some
//! file systems) a named hidden temporary file (`.NAME.XXXXXX.tmp`) is used instead and removed on
//! drop; only an uncatchable kill can then leave it behind.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

enum Inner {
    /// `O_TMPFILE`: no name until commit.
    #[cfg(target_os = "linux")]
    Unnamed(File),
    /// Fallback: a hidden named temporary file, deleted on drop.
    Named(tempfile::NamedTempFile),
}

/// A file under construction; see the module docs.
pub struct AtomicFile {
    target: PathBuf,
    dir: PathBuf,
    inner: Inner,
}

fn hidden_prefix(target: &Path) -> Result<String> {
    let name = target.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    if name.is_empty() {
        return Err(Error::value(format!("{} is not a file path", target.display())));
    }
    Ok(format!(".{name}."))
}

impl AtomicFile {
    /// Start a file that will become `target`. The directory must exist and be writable; that is
    /// checked now.
    pub fn create(target: impl AsRef<Path>) -> Result<AtomicFile> {
        let target = target.as_ref().to_path_buf();
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let prefix = hidden_prefix(&target)?;
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::fs::OpenOptionsExt;
            let r = std::fs::OpenOptions::new()
                .write(true)
                .mode(0o666)
                .custom_flags(libc::O_TMPFILE)
                .open(&dir);
            match r {
                Ok(f) => return Ok(AtomicFile { target, dir, inner: Inner::Unnamed(f) }),
                // Not supported by this kernel or file system: fall back to a named file.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::EINVAL)) => {}
                Err(e) => return Err(Error::io(format!("creating a temporary file in {}", dir.display()), e)),
            }
        }
        let mut b = tempfile::Builder::new();
        b.prefix(&prefix).suffix(".tmp");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // Like a plain create: 0666 minus the umask (tempfile's default would be 0600).
            b.permissions(std::fs::Permissions::from_mode(0o666));
        }
        let f = b
            .tempfile_in(&dir)
            .map_err(|e| Error::io(format!("creating a temporary file in {}", dir.display()), e))?;
        Ok(AtomicFile { target, dir, inner: Inner::Named(f) })
    }

    /// The file being written.
    pub fn file(&self) -> &File {
        match &self.inner {
            #[cfg(target_os = "linux")]
            Inner::Unnamed(f) => f,
            Inner::Named(f) => f.as_file(),
        }
    }

    /// The name the file will get.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Flush to disk and give the file its name, replacing any file already there.
    pub fn commit(self) -> Result<()> {
        let ctx = || format!("writing {}", self.target.display());
        self.file().sync_all().map_err(|e| Error::io(ctx(), e))?;
        match self.inner {
            #[cfg(target_os = "linux")]
            Inner::Unnamed(f) => {
                use std::os::unix::ffi::OsStrExt;
                use std::os::unix::io::AsRawFd;
                let proc_path = std::ffi::CString::new(format!("/proc/self/fd/{}", f.as_raw_fd())).map_err(|e| Error::value(e.to_string()))?;
                let prefix = hidden_prefix(&self.target)?;
                // Link under a fresh hidden name, then rename over the target (link(2) cannot
                // replace an existing file). Retry names that happen to exist.
                for attempt in 0..100u32 {
                    let tmp = self.dir.join(format!("{prefix}{}.{attempt}.tmp", std::process::id()));
                    let c_tmp = std::ffi::CString::new(tmp.as_os_str().as_bytes()).map_err(|e| Error::value(e.to_string()))?;
                    // SAFETY: both paths are valid NUL-terminated C strings that outlive the call;
                    // linkat does not retain them.
                    let rc = unsafe {
                        libc::linkat(libc::AT_FDCWD, proc_path.as_ptr(), libc::AT_FDCWD, c_tmp.as_ptr(), libc::AT_SYMLINK_FOLLOW)
                    };
                    if rc != 0 {
                        let e = io::Error::last_os_error();
                        if e.kind() == io::ErrorKind::AlreadyExists {
                            continue;
                        }
                        return Err(Error::io(format!("naming {}", self.target.display()), e));
                    }
                    return match std::fs::rename(&tmp, &self.target) {
                        Ok(()) => Ok(()),
                        Err(e) => {
                            let _ = std::fs::remove_file(&tmp);
                            Err(Error::io(format!("renaming into {}", self.target.display()), e))
                        }
                    };
                }
                Err(Error::value(format!("could not find a free temporary name beside {}", self.target.display())))
            }
            Inner::Named(f) => f
                .persist(&self.target)
                .map(|_| ())
                .map_err(|e| Error::io(format!("renaming into {}", self.target.display()), e.error)),
        }
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            #[cfg(target_os = "linux")]
            Inner::Unnamed(f) => f.write(buf),
            Inner::Named(f) => f.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            #[cfg(target_os = "linux")]
            Inner::Unnamed(f) => f.flush(),
            Inner::Named(f) => f.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_visible_until_commit_and_nothing_left_on_drop() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("out.bin");
        let mut f = AtomicFile::create(&target).unwrap();
        f.write_all(b"hello").unwrap();
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0, "no name while writing (O_TMPFILE)");
        drop(f);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
        let mut f = AtomicFile::create(&target).unwrap();
        f.write_all(b"hello").unwrap();
        f.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"hello");
        let mut f = AtomicFile::create(&target).unwrap();
        f.write_all(b"again").unwrap();
        f.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"again");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
