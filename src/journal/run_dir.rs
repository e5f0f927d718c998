//! The run store: where run directories live, how run ids are made, and how a `RUN` argument
//! (an id, a unique id prefix, `last`, or a directory) is resolved.

use std::path::{Path, PathBuf};

pub const DEFAULT_RUNS_DIR: &str = ".coord/runs";
const PID_FILE: &str = "run.pid";
const OWNER_LOCK_FILE: &str = "owner.lock";

#[derive(Debug, thiserror::Error)]
pub enum RunLookupError {
    #[error("no run `{0}` (looked in {1}); `coord runs` lists the recorded runs")]
    NotFound(String, PathBuf),
    #[error("`{0}` matches several runs: {1}")]
    Ambiguous(String, String),
    #[error("no runs recorded in {0}")]
    NoRuns(PathBuf),
}

#[derive(Clone, Debug)]
pub struct RunStore {
    pub root: PathBuf,
}

impl RunStore {
    /// `--runs-dir`, else `COORD_RUNS_DIR`, else `.coord/runs` under the current directory.
    pub fn locate(flag: Option<&Path>) -> Self {
        let root = flag
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("COORD_RUNS_DIR").filter(|v| !v.is_empty()).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_RUNS_DIR));
        RunStore { root }
    }

    /// Creates a fresh run directory with a new, sortable id.
    pub fn create_run(&self, coordinator: &str) -> std::io::Result<(String, PathBuf)> {
        std::fs::create_dir_all(&self.root)?;
        let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S");
        for attempt in 0u32..1000 {
            let suffix = run_suffix(coordinator, attempt);
            let id = format!("{stamp}-{suffix}");
            let dir = self.root.join(&id);
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok((id, dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other("could not allocate a run id"))
    }

    /// All run directories, oldest first (ids sort by start time).
    pub fn list(&self) -> Vec<(String, PathBuf)> {
        let mut runs: Vec<(String, PathBuf)> = std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join(super::writer::JOURNAL_FILE).exists())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .collect();
        runs.sort();
        runs
    }

    pub fn resolve(&self, run: &str) -> Result<PathBuf, RunLookupError> {
        let as_path = Path::new(run);
        if as_path.join(super::writer::JOURNAL_FILE).exists() {
            return Ok(as_path.to_path_buf());
        }
        let runs = self.list();
        if run == "last" || run == "latest" {
            return runs.last().map(|(_, p)| p.clone()).ok_or_else(|| RunLookupError::NoRuns(self.root.clone()));
        }
        if let Some((_, p)) = runs.iter().find(|(id, _)| id == run) {
            return Ok(p.clone());
        }
        let matches: Vec<_> = runs.iter().filter(|(id, _)| id.starts_with(run) || id.ends_with(run)).collect();
        match matches.as_slice() {
            [(_, p)] => Ok(p.clone()),
            [] => Err(RunLookupError::NotFound(run.to_owned(), self.root.clone())),
            many => Err(RunLookupError::Ambiguous(
                run.to_owned(),
                many.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>().join(", "),
            )),
        }
    }
}

/// Four hex digits that differ between runs started in the same second.
fn run_suffix(coordinator: &str, attempt: u32) -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let seed = format!("{coordinator}:{}:{nanos}:{attempt}", std::process::id());
    super::call_key::short_hash(seed.as_bytes())[..4].to_owned()
}

/// The one process that may append to a run's journal: an exclusive OS lock (`flock`) on
/// `<run_dir>/owner.lock`, taken before anything reads the journal to continue it and held
/// until the owner ends. The kernel releases it when the process dies, kill -9 included, so
/// a dead owner never blocks a resume; there is no window between looking and taking.
#[derive(Debug)]
pub struct OwnerLock {
    _file: std::fs::File,
}

#[derive(Debug, thiserror::Error)]
pub enum OwnerLockError {
    #[error("run {run} is already owned by {}: only one process may continue a run", .pid.map(|p| format!("process {p}")).unwrap_or_else(|| "another process".into()))]
    Held { run: String, pid: Option<u32> },
    #[error("cannot lock {}: {source}", .path.display())]
    Io { path: std::path::PathBuf, source: std::io::Error },
}

impl OwnerLock {
    pub fn take(run_dir: &Path) -> Result<Self, OwnerLockError> {
        use std::io::{Read, Seek, Write};
        use std::os::unix::io::AsRawFd;
        let path = run_dir.join(OWNER_LOCK_FILE);
        let io = |source| OwnerLockError::Io { path: path.clone(), source };
        let mut file =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        // SAFETY: flock on a descriptor this function owns; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            // The holder writes its pid just after taking the lock: give it a moment.
            let mut pid = None;
            for _ in 0..10 {
                let mut text = String::new();
                let _ = file.rewind().and_then(|_| file.read_to_string(&mut text));
                pid = text.trim().parse().ok();
                if pid.is_some() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let run = run_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            return Err(OwnerLockError::Held { run, pid });
        }
        // The holder's pid, for the message a second process gets.
        file.set_len(0).and_then(|_| file.rewind()).and_then(|_| write!(file, "{}", std::process::id())).map_err(io)?;
        Ok(OwnerLock { _file: file })
    }
}

/// Marks a run directory as owned by this live process, so views can tell a running run from
/// one whose process died without finishing.
pub fn write_pid(run_dir: &Path) -> std::io::Result<()> {
    std::fs::write(run_dir.join(PID_FILE), std::process::id().to_string())
}

pub fn clear_pid(run_dir: &Path) {
    let _ = std::fs::remove_file(run_dir.join(PID_FILE));
}

/// True when the run's recorded process is still alive.
pub fn owner_alive(run_dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(run_dir.join(PID_FILE)) else {
        return false;
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        return false;
    };
    // Signal 0 probes for existence without delivering anything.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Gives a redo's directory its parent's blobs: hard links where the file system allows (blobs
/// are content-addressed and never change), copies elsewhere.
pub fn share_blobs(parent_dir: &Path, child_dir: &Path) -> std::io::Result<()> {
    let Ok(blobs) = std::fs::read_dir(parent_dir.join("blobs")) else { return Ok(()) };
    let target = child_dir.join("blobs");
    std::fs::create_dir_all(&target)?;
    for blob in blobs.flatten() {
        let to = target.join(blob.file_name());
        if std::fs::hard_link(blob.path(), &to).is_err() {
            std::fs::copy(blob.path(), &to)?;
        }
    }
    Ok(())
}

/// The header of the run in `dir`, read from the journal's first line alone.
pub fn read_header(dir: &Path) -> Option<super::entry::RunHeader> {
    use std::io::BufRead;
    let file = std::fs::File::open(dir.join(super::writer::JOURNAL_FILE)).ok()?;
    let mut first = String::new();
    std::io::BufReader::new(file).read_line(&mut first).ok()?;
    match serde_json::from_str::<super::entry::Line>(&first).ok()?.entry {
        super::entry::Entry::RunStarted { header } => Some(header),
        _ => None,
    }
}

/// The redos of run `run_id` in `store`, oldest first, with where each branched.
pub fn redos_of(store: &RunStore, run_id: &str) -> Vec<(String, super::entry::ParentRun)> {
    store
        .list()
        .into_iter()
        .filter_map(|(id, dir)| Some((id, read_header(&dir)?.parent?)))
        .filter(|(_, parent)| parent.run_id == run_id)
        .collect()
}
