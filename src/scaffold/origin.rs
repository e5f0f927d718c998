//! Guesses `owner/name` from a repository's `origin` remote, for `coord.toml`'s `[github] repo`.
//!
//! It keeps the path's last two segments and, for a host other than github.com, the host name
//! (GitHub Enterprise): never the user, password or token a remote URL may carry.

use std::path::Path;
use std::process::{Command, Stdio};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteRepo {
    /// `owner/name`.
    pub repo: String,
    /// The host when it is not github.com.
    pub enterprise_host: Option<String>,
}

/// The `origin` remote of the git repository at `dir`, if git is there and it has one.
pub fn guess(dir: &Path) -> Option<RemoteRepo> {
    let out = Command::new("git")
        .args(["config", "--get", "remote.origin.url"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    parse(String::from_utf8_lossy(&out.stdout).trim())
}

/// `https://[user[:token]@]host/owner/name[.git]`, `ssh://git@host[:port]/owner/name.git`,
/// `git@host:owner/name.git`.
pub fn parse(url: &str) -> Option<RemoteRepo> {
    let (host, path) = if let Some((_, rest)) = url.split_once("://") {
        rest.split_once('/')?
    } else {
        // scp-like syntax: [user@]host:path
        let (host, path) = url.split_once(':')?;
        (host, path)
    };
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = host.split_once(':').map_or(host, |(h, _)| h).to_ascii_lowercase();
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let mut segments = path.rsplit('/');
    let name = segments.next().filter(|s| !s.is_empty())?;
    let owner = segments.next().filter(|s| !s.is_empty())?;
    let valid = |s: &str| s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if host.is_empty() || !valid(owner) || !valid(name) || !valid(&host) {
        return None;
    }
    let enterprise_host = (host != "github.com" && host != "www.github.com").then_some(host);
    Some(RemoteRepo { repo: format!("{owner}/{name}"), enterprise_host })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(url: &str) -> Option<(String, Option<String>)> {
        parse(url).map(|r| (r.repo, r.enterprise_host))
    }

    #[test]
    fn reads_the_common_remote_forms_and_drops_credentials() {
        let acme = Some(("acme/widgets".to_owned(), None));
        assert_eq!(repo("https://github.com/acme/widgets.git"), acme);
        assert_eq!(repo("https://github.com/acme/widgets"), acme);
        assert_eq!(repo("git@github.com:acme/widgets.git"), acme);
        assert_eq!(repo("ssh://git@github.com:22/acme/widgets.git"), acme);
        assert_eq!(repo("https://x-access-token:ghp_secret@github.com/acme/widgets.git"), acme);
        assert_eq!(
            repo("https://git.acme.io/acme/widgets.git"),
            Some(("acme/widgets".into(), Some("git.acme.io".into())))
        );
        assert_eq!(repo("/srv/git/widgets.git"), None);
        assert_eq!(repo("not a url"), None);
    }
}
