//! `coord check` through the binary: the shipped coordinators are clean; each kind of mistake
//! is a diagnostic at `file:line:col` with exit 2, found before anything runs.

use crate::support;

use support::TestProject;

/// A copy of the repository's coordinators, workflows and stdlib, plus `files`, checked.
fn check(files: &[(&str, &str)], args: &[&str]) -> (TestProject, support::Outcome) {
    let p = TestProject::with_repo_files();
    for (path, text) in files {
        p.write(path, text);
    }
    let out = p.coord().arg_list(["check"].iter().chain(args)).run();
    out.stderr_lacks("panicked");
    (p, out)
}

trait ArgList {
    fn arg_list<'a>(self, args: impl Iterator<Item = &'a &'a str>) -> Self;
}

impl ArgList for support::CoordCommand {
    fn arg_list<'a>(self, args: impl Iterator<Item = &'a &'a str>) -> Self {
        self.args(args.copied().collect::<Vec<_>>())
    }
}

#[test]
fn the_shipped_coordinators_are_clean() {
    let (_, out) = check(&[], &["coordinators/"]);
    out.code(0).stdout_has("checked 8 coordinators").stdout_has("no problems");
    // No arguments: the project's coordinators/.
    let (_, out) = check(&[], &[]);
    out.code(0);
}

#[test]
fn a_misspelt_host_function_is_found_before_anything_runs() {
    let (p, out) = check(
        &[("coordinators/typo.rhai", "let prs = github::prs();\nlet h = spawn_sesion(\"mr-review\", #{});\n")],
        &["coordinators/typo.rhai"],
    );
    out.code(2)
        .stderr_has("coordinators/typo.rhai:2:9")
        .stderr_has("unknown function `spawn_sesion`")
        .stderr_has("did you mean `spawn_session`");
    assert!(p.runs().is_empty(), "check never creates a run");
}

#[test]
fn a_misspelt_workflow_is_found_in_spawn_session_and_in_library_calls() {
    let script = "import \"stdlib/fanout\" as fanout;\nlet a = spawn_session(\"mr-reveiw\", #{});\nlet b = fanout::run(\"coding-tsak\", [1], |n| #{});\n";
    let (_, out) = check(&[("coordinators/wf.rhai", script)], &["coordinators/wf.rhai"]);
    out.code(2)
        .stderr_has("coordinators/wf.rhai:2:23: no workflow `mr-reveiw`")
        .stderr_has("did you mean `mr-review`")
        .stderr_has("coordinators/wf.rhai:3:21: no workflow `coding-tsak`");
}

#[test]
fn a_missing_import_is_found_by_check_and_stops_run_before_anything_runs() {
    let script =
        "let repo = \"acme/widgets\";\nimport \"team/review\" as review;\nlet r = spawn_session(\"mr-review\", #{});\n";
    let (p, out) = check(&[("coordinators/imports.rhai", script)], &["coordinators/imports.rhai"]);
    out.code(2).stderr_has("coordinators/imports.rhai:2:8: cannot import `team/review`");
    assert!(out.stderr.contains("COORD_PATH"), "the help says where libraries come from: {}", out.stderr);

    let out = p.coord().args(["run", "coordinators/imports.rhai", "--json"]).run();
    out.code(2).stderr_has("coordinators/imports.rhai:2:8");
    assert!(p.runs().is_empty(), "a script whose imports do not resolve leaves no run behind");
}

#[test]
fn wrong_arity_and_unknown_module_functions() {
    let script = "import \"stdlib/review\" as review;\nnotify(\"slack:#eng\");\nlet v = review::verdct(#{});\nlet c = review::count([]);\n";
    let (_, out) = check(&[("coordinators/arity.rhai", script)], &["coordinators/arity.rhai"]);
    out.code(2)
        .stderr_has("arity.rhai:2:1: `notify` takes 2 arguments, not 1")
        .stderr_has("signature: notify(channel: string")
        .stderr_has("arity.rhai:3:17: unknown function `review::verdct`")
        .stderr_has("did you mean `review::verdict`")
        .stderr_has("arity.rhai:4:17: `review::count` takes 2 arguments, not 1")
        .stdout_has("3 problems");
}

#[test]
fn script_functions_closures_and_rhai_functions_are_not_flagged() {
    let script = r#"
fn route(pr, passes) { if passes > 1 { "escalate" } else { "merge" } }
let prs = [#{ number: 1 }, #{ number: 2 }];
let routes = prs.map(|pr| route(pr, 0));
let pick = |x| x + 1;
let n = pick(1);
let s = `${n}`;
s.trim();
let t = parse_time("2026-01-01T00:00:00Z") ?? 0;
let handlers = #{ on_merge: |pr| pr + 1 };
let m = handlers.on_merge(1);
#{ routes: routes, n: n, has: "a" in ["a"], t: format_time(t), j: to_json(#{}) }
"#;
    let (_, out) = check(&[("coordinators/fine.rhai", script)], &["coordinators/fine.rhai"]);
    out.code(0);
}

#[test]
fn workflow_templates_and_schemas_point_into_the_workflow_file() {
    let (_, out) = check(
        &[(
            "workflows/summarize.toml",
            "harness = \"mock\"\nprompt = \"Summarize {{ inputs.pr }} for {{ inputs.audience }}\"\nschema = { type = \"objekt\" }\n[inputs]\npr = \"int\"\n",
        )],
        &["coordinators/"],
    );
    out.code(2)
        .stderr_has("workflows/summarize.toml:2:")
        .stderr_has("`inputs.audience`, which `[inputs]` does not declare")
        .stderr_has("workflows/summarize.toml:3:10")
        .stderr_has("JSON Schema");
}

#[test]
fn scenarios_must_name_their_coordinator_and_existing_workflows() {
    let (_, out) = check(
        &[
            (
                "coordinators/groom-prs/scenarios/typo.toml",
                "coordinator = \"groom-pr\"\n[[leaf]]\nworkflow = \"mr-reviw\"\noutput = {}\n",
            ),
            ("coordinators/gone/scenarios/demo.toml", "coordinator = \"gone\"\n"),
        ],
        &["coordinators/"],
    );
    out.code(2)
        .stderr_has("typo.toml:1:15: no coordinator `groom-pr`")
        .stderr_has("typo.toml:3:12: no workflow `mr-reviw`")
        .stderr_has("gone/scenarios/demo.toml:1:1: a scenario of a coordinator");
}

#[test]
fn a_missing_library_folder_in_coord_toml_is_reported() {
    let (_, out) = check(&[("coord.toml", "[library]\npaths = [\"../nowhere\"]\n")], &["coordinators/"]);
    out.code(2).stderr_has("coord.toml:2:10: library folder `../nowhere`");
}

#[test]
fn nothing_to_check_is_a_usage_error() {
    let p = TestProject::new();
    p.coord().args(["check", "missing.rhai"]).run().code(2);
}
