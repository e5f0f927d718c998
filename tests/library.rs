//! Team libraries through the binary: a script in a temporary folder imports `team/review`
//! from a library outside the project, found through `[library] paths` or `COORD_PATH`, and
//! runs; library workflows become visible; a library overrides a built-in stdlib module;
//! `coord lib` says what is used.

use crate::support;

use support::TestProject;

/// A team library folder (outside any project): a `team/review` module and a workflow.
fn team_library(marker: &str) -> tempfile::TempDir {
    let lib = tempfile::tempdir().unwrap();
    let write = |rel: &str, text: &str| {
        let path = lib.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "team/review.rhai",
        &format!(
            r#"// The team's review routing, shared by every project.
import "stdlib/review" as review;
import "./policy" as policy;

fn route(result) {{
    let v = review::verdict(result);
    #{{ verdict: v, action: policy::action(v), from: "{marker}" }}
}}
"#
        ),
    );
    write("team/policy.rhai", "fn action(verdict) { if verdict == \"clean\" { \"merge\" } else { \"escalate\" } }\n");
    write(
        "workflows/team-review.toml",
        "harness = \"claude-code\"\nprompt = \"Review #{{ inputs.pr }}\"\nschema = { type = \"object\", required = [\"verdict\"] }\n[inputs]\npr = \"integer\"\n",
    );
    lib
}

const SCRIPT: &str = r#"import "team/review" as team;
let r = await_session(spawn_session("team-review", #{ goal: "review", inputs: #{ pr: 7 } }));
team::route(r)
"#;

const SCENARIO: &str = r#"[[leaf]]
workflow = "team-review"
output = { verdict = "clean", findings = [] }
"#;

/// A project in a temporary folder with the script and its scenario, and no workflows of its own.
fn project() -> TestProject {
    let p = TestProject::new();
    p.write("review-one.rhai", SCRIPT);
    p.write("review-one/scenarios/demo.toml", SCENARIO);
    p
}

fn run_demo(p: &TestProject, coord_path: Option<&std::path::Path>) -> serde_json::Value {
    let mut cmd = p.coord().args(["run", "review-one.rhai", "--demo", "--json"]);
    if let Some(path) = coord_path {
        cmd = cmd.env("COORD_PATH", path);
    }
    let out = cmd.run();
    out.code(0);
    out.json()["result"].clone()
}

#[test]
fn team_review_through_coord_toml_library_paths() {
    let lib = team_library("config");
    let p = project();
    let rel = pathdiff(lib.path(), p.path());
    p.write("coord.toml", &format!("[library]\npaths = [{:?}]\n", rel.display().to_string()));
    let result = run_demo(&p, None);
    assert_eq!(result, serde_json::json!({ "verdict": "clean", "action": "merge", "from": "config" }));
    // The check sees the library's module and workflow too.
    let out = p.coord().args(["check", "review-one.rhai"]).run();
    out.code(0).stdout_has("no problems");
}

#[test]
fn team_review_through_coord_path() {
    let lib = team_library("env");
    let p = project();
    let result = run_demo(&p, Some(lib.path()));
    assert_eq!(result["from"], "env");
    assert_eq!(result["action"], "merge");
    // Without the library, the import fails before anything runs, at the import.
    let out = p.coord().args(["run", "review-one.rhai", "--demo"]).run();
    out.code(2).stderr_has("review-one.rhai:1:8");
    assert!(p.runs().len() == 1, "only the successful run left a run directory");
}

#[test]
fn coord_path_comes_before_coord_toml() {
    let from_env = team_library("env");
    let from_config = team_library("config");
    let p = project();
    p.write("coord.toml", &format!("[library]\npaths = [{:?}]\n", from_config.path().display().to_string()));
    assert_eq!(run_demo(&p, Some(from_env.path()))["from"], "env");
    assert_eq!(run_demo(&p, None)["from"], "config");
}

#[test]
fn a_library_overrides_a_builtin_stdlib_module_and_lib_list_says_so() {
    let lib = team_library("env");
    std::fs::create_dir_all(lib.path().join("stdlib")).unwrap();
    std::fs::write(lib.path().join("stdlib/text.rhai"), "fn plural(n, word) { `${n} x ${word}` }\n").unwrap();
    let p = TestProject::new();
    p.write("s.rhai", "import \"stdlib/text\" as text;\ntext::plural(2, \"PR\")\n");
    let out = p.coord().args(["run", "s.rhai", "--json"]).env("COORD_PATH", lib.path()).run();
    out.code(0);
    assert_eq!(out.json()["result"], "2 x PR");

    let out = p.coord().args(["lib", "list"]).env("COORD_PATH", lib.path()).run();
    out.code(0);
    let text_line = out.stdout.lines().find(|l| l.trim_start().starts_with("stdlib/text")).unwrap();
    assert!(text_line.contains("stdlib/text.rhai") && text_line.contains("overrides the built-in"), "{}", out.stdout);
    let review_line = out.stdout.lines().find(|l| l.trim_start().starts_with("stdlib/review")).unwrap();
    assert!(review_line.contains("built-in"), "{}", out.stdout);
    out.stdout_has("team/review").stdout_has("[COORD_PATH]");

    let out = p.coord().args(["lib", "list", "--json"]).env("COORD_PATH", lib.path()).run();
    out.code(0);
    let modules = out.json()["modules"].as_array().unwrap().clone();
    let text = modules.iter().find(|m| m["import"] == "stdlib/text").unwrap();
    assert_eq!(text["builtin"], false);
    assert_eq!(text["shadowed"], serde_json::json!(["built-in"]));
}

#[test]
fn lib_show_prints_a_builtin_module() {
    let p = TestProject::new();
    let out = p.coord().args(["lib", "show", "stdlib/review"]).run();
    out.code(0).stdout_has("fn until_clean(").stderr_has("builtin:stdlib/review.rhai");
    p.coord().args(["lib", "show", "stdlib/nope"]).run().code(2);
}

#[test]
fn an_error_inside_a_builtin_module_names_it() {
    let p = TestProject::new();
    p.write("s.rhai", "import \"stdlib/review\" as review;\nreview::count(5, \"minor\")\n");
    let out = p.coord().args(["run", "s.rhai"]).run();
    out.code(2).stderr_has("builtin:stdlib/review.rhai:");
}

/// `path` relative to `base` (both absolute), with `..` as needed.
fn pathdiff(path: &std::path::Path, base: &std::path::Path) -> std::path::PathBuf {
    let path: Vec<_> = path.components().collect();
    let base: Vec<_> = base.components().collect();
    let common = path.iter().zip(&base).take_while(|(a, b)| a == b).count();
    let mut out = std::path::PathBuf::new();
    for _ in common..base.len() {
        out.push("..");
    }
    for c in &path[common..] {
        out.push(c.as_os_str());
    }
    out
}
