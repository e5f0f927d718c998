//! Every shipped scenario's routing, in one place: its trace as an insta snapshot (the same
//! files `coord test` compares, `snapshots/`) and its `[expect]` block, which every shipped
//! scenario has, so `cargo test` covers routing as `coord test` does.

use coord::testing::suite;
use std::path::PathBuf;

#[test]
fn shipped_scenarios_route_as_their_snapshots_say() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::env::set_current_dir(&root).unwrap();
    let cases = suite::discover(&[PathBuf::from("coordinators")]).unwrap();
    assert!(!cases.is_empty(), "no scenarios shipped");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    for case in cases {
        let run = suite::run_case(&case, runtime.handle(), None)
            .unwrap_or_else(|e| panic!("{}: {e}", case.scenario.display()));
        let expect = run
            .expect
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no [expect] block says what must happen", case.scenario.display()));
        let failures = suite::check_expectations(expect, &run.outcome);
        assert!(failures.is_empty(), "{}:\n{}", case.scenario.display(), failures.join("\n"));
        insta::with_settings!({
            snapshot_path => root.join("snapshots"),
            prepend_module_to_snapshot => false,
            omit_expression => true,
        }, {
            insta::assert_snapshot!(format!("{}__{}", case.coordinator, case.name), run.trace);
        });
    }
}
