//! Which GitHub repository a live run talks to: `owner/name` from `--repo` or `inputs.repo`,
//! from `[github] repo`, or from the `origin` remote of the working directory.
//!
//! It only parses and asks git for the remote URL; it must not talk to GitHub.

use std::fmt;
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repository {
    pub owner: String,
    pub name: String,
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

fn valid_part(part: &str) -> bool {
    !part.is_empty()
        && part != "."
        && part != ".."
        && part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Repository {
    /// `owner/name`, as `--repo` and `inputs.repo` give it.
    pub fn parse(slug: &str) -> Result<Self, String> {
        let slug = slug.trim();
        match slug.split('/').collect::<Vec<_>>().as_slice() {
            [owner, name] if valid_part(owner) && valid_part(name) => {
                Ok(Repository { owner: (*owner).to_owned(), name: name.trim_end_matches(".git").to_owned() })
            }
            _ => Err(format!("`{slug}` is not a repository: write it as owner/name")),
        }
    }

    /// The repository a remote URL points at: `https://host/owner/name(.git)`,
    /// `git@host:owner/name(.git)` or `ssh://git@host(:port)/owner/name(.git)`. Any host is
    /// accepted (GitHub Enterprise); a local path is not a GitHub repository.
    pub fn from_remote_url(url: &str) -> Option<Self> {
        let url = url.trim();
        let path = if let Some((_, rest)) = url.split_once("://") {
            if url.starts_with("file://") {
                return None;
            }
            // Drop `user@host:port`; what is left is the path.
            rest.split_once('/')?.1
        } else if let Some((host, path)) = url.split_once(':') {
            // scp-like syntax; a bare path with a colon in it is not a remote.
            if host.contains('/') {
                return None;
            }
            path
        } else {
            return None;
        };
        let path = path.trim_matches('/').trim_end_matches(".git");
        let mut parts = path.rsplit('/');
        let name = parts.next()?;
        let owner = parts.next()?;
        Repository::parse(&format!("{owner}/{name}")).ok()
    }

    /// The repository of `dir`'s `origin` remote.
    pub fn from_origin(dir: &Path) -> Result<Self, String> {
        let url = duct::cmd!("git", "remote", "get-url", "origin")
            .dir(dir)
            .stdout_capture()
            .stderr_null()
            .unchecked()
            .run()
            .map_err(|e| format!("cannot run git: {e}"))?;
        if !url.status.success() {
            return Err(format!("{} has no `origin` remote (or is not in a git repository)", dir.display()));
        }
        let url = String::from_utf8_lossy(&url.stdout).trim().to_owned();
        Repository::from_remote_url(&url)
            .ok_or_else(|| format!("the `origin` remote of {} does not name a GitHub repository", dir.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(Repository::parse("acme/widgets").unwrap().to_string(), "acme/widgets");
        assert!(Repository::parse("acme").is_err());
        assert!(Repository::parse("acme/widgets/extra").is_err());
        assert!(Repository::parse("../etc").is_err());
        assert!(Repository::parse("acme/wid gets").is_err());
    }

    #[test]
    fn remote_urls() {
        for url in [
            "https://github.com/acme/widgets.git",
            "https://github.com/acme/widgets",
            "https://x-access-token@github.com/acme/widgets/",
            "git@github.com:acme/widgets.git",
            "ssh://git@github.com/acme/widgets.git",
            "ssh://git@ghe.example.com:2222/acme/widgets",
            "https://ghe.example.com/acme/widgets.git",
        ] {
            assert_eq!(
                Repository::from_remote_url(url).map(|r| r.to_string()).as_deref(),
                Some("acme/widgets"),
                "{url}"
            );
        }
        for url in ["/srv/git/widgets.git", "file:///srv/git/acme/widgets.git", "widgets"] {
            assert_eq!(Repository::from_remote_url(url), None, "{url}");
        }
    }
}
