//! The PID file of the process serving (`server.pid_file`): written once it serves, removed
//! when it stops if it still names this process (a successor may have rewritten it).

use super::StartError;

/// The PID file of the process serving: written once it serves, removed when it stops if it
/// still names this process (a successor may have rewritten it).
pub(super) struct PidFile(Option<std::path::PathBuf>);

impl PidFile {
    pub(super) fn write(path: &std::path::Path) -> Result<PidFile, StartError> {
        if path.as_os_str().is_empty() {
            return Ok(PidFile(None));
        }
        // Written whole under another name, then renamed: a reader never sees half a PID.
        let partial = path.with_extension("partial");
        std::fs::write(&partial, format!("{}\n", std::process::id()))
            .and_then(|()| std::fs::rename(&partial, path))
            .map_err(|e| StartError::System(format!("server.pid_file {}: {e}", path.display())))?;
        Ok(PidFile(Some(path.to_path_buf())))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let ours = std::fs::read_to_string(path)
                .is_ok_and(|text| text.trim() == std::process::id().to_string());
            if ours {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
