//! spec-to-merge, live, on a real git repository whose main is red: the local merge queue
//! tests main before merging, refuses with `main_red`, and the coordinator halts as it does
//! offline (coordinators/spec-to-merge/scenarios/main-red.toml), reopening no ticket.

use super::binary::journal;
use super::merge_queue::git;
use crate::support::TestProject;
use serde_json::json;

const ARCHITECT: &str =
    "#!/bin/sh\ncat >/dev/null\necho '{\"areas\":[{\"name\":\"billing\",\"summary\":\"The rename.\"}]}'\n";

const MANAGER: &str = r#"#!/bin/sh
cat >/dev/null
echo '{"tickets":[{"id":"B1","title":"Rename the package","description":"billing -> invoicing"},{"id":"B2","title":"Update imports","description":"Every importer."},{"id":"B3","title":"Update the docs","description":"docs/billing.md"}]}'
"#;

/// Commits one file on the ticket's branch (coord starts the leaf's own worktree on it), and
/// submits it.
const CODER: &str = r#"#!/bin/sh
req=$(cat)
branch=$(printf '%s' "$req" | sed -n 's/.*"branch":"\([^"]*\)".*/\1/p')
export GIT_AUTHOR_NAME=Coder GIT_AUTHOR_EMAIL=coder@example.com GIT_COMMITTER_NAME=Coder GIT_COMMITTER_EMAIL=coder@example.com
[ "$(git rev-parse --abbrev-ref HEAD)" = "$branch" ] || { echo "on $(git rev-parse --abbrev-ref HEAD), not $branch" >&2; exit 1; }
echo "$branch" > "work-$(printf '%s' "$branch" | tr / -).txt"
git add -A >&2 && git commit -q -m "$branch" >&2 || exit 1
echo '{"status":"submitted","summary":"Done."}'
"#;

#[test]
fn spec_to_merge_halts_on_a_red_main_and_reopens_no_ticket() {
    let p = TestProject::with_repo_files();
    for (workflow, script) in [("spec-architect", ARCHITECT), ("spec-manager", MANAGER), ("ticket-coding", CODER)] {
        let program = p.write_executable(&format!("fake-{workflow}.sh"), script);
        let file = format!("workflows/{workflow}.toml");
        let toml = p.read(&file);
        p.write(&file, &format!("command = [\"{}\"]\n{toml}", program.display()));
    }
    p.write("coord.toml", "[merge]\ntest_command = \"sh test.sh\"\ntest_timeout = \"2m\"\n");
    p.write(
        "test.sh",
        "if [ -e broken ]; then echo 'FAIL: broken file present'; exit 1; fi\necho 'all tests passed'\n",
    );
    p.write(".gitignore", ".coord/\n");
    // Someone committed a file that breaks the tests: main itself is red.
    p.write("broken", "x\n");
    git(p.path(), &["init", "-q", "-b", "main"]);
    git(p.path(), &["add", "-A"]);
    git(p.path(), &["commit", "-q", "-m", "a red main"]);
    let main_before = git(p.path(), &["rev-parse", "main"]);

    let out = p
        .coord()
        .args(["run", "coordinators/spec-to-merge.rhai", "--json"])
        .args(["--input", "spec=Rename the billing module.", "--input", "parallel=2", "--input", "channel=stdout"])
        .args(["--leaf", "spec-architect=command", "--leaf", "spec-manager=command", "--leaf", "ticket-coding=command"])
        .run();
    out.code(0);
    let v = out.json();
    let result = &v["result"];
    assert_eq!(result["status"], "halted", "{v}");
    assert_eq!(result["merged"], json!([]));
    assert_eq!(result["reopened"], json!([]), "no ticket is blamed for main");
    assert_eq!(result["blocked"], json!({}));
    assert_eq!(result["awaiting_merge"], json!(["B1", "B2"]));
    assert_eq!(result["open"], json!(["B3"]));

    let run = p.runs().pop().unwrap();
    let merges: Vec<_> =
        journal(&run).into_iter().filter(|e| e["type"] == "effect_result" && e["fn"] == "merge").collect();
    assert_eq!(merges.len(), 1, "one merge asked, then the run halted");
    let refused = &merges[0]["result"];
    assert_eq!((refused["status"].as_str(), refused["reason"].as_str()), (Some("refused"), Some("main_red")));
    assert_eq!(refused["branch"], "ticket/B1");
    assert_eq!(refused["sha"], main_before.as_str());
    assert!(refused["output_tail"].as_str().unwrap().contains("FAIL: broken file present"), "{refused}");
    assert!(
        out.stderr.contains("spec-to-merge halted: main is red"),
        "the summary went to the channel: {}",
        out.stderr
    );

    assert_eq!(git(p.path(), &["rev-parse", "main"]), main_before, "main did not move");
    for branch in ["ticket/B1", "ticket/B2"] {
        git(p.path(), &["rev-parse", "--verify", "--quiet", &format!("refs/heads/{branch}")]);
    }
}
