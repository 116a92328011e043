//! `strata sst ...` against run files the engine wrote.

mod cli_support;

use cli_support::{a_run, expect_code, flip_byte, strata, temp_db};

#[test]
fn sst_commands_print_what_the_run_holds() {
    let (_tmp, dir) = temp_db();
    let run = a_run(&dir);
    let run = run.to_str().unwrap();

    let scan = strata(&["sst", "scan", run]);
    expect_code(&scan, 0);
    assert!(scan.stdout.contains("user000") && scan.stdout.contains("value-000"));
    assert!(scan.stdout.contains("0x00ff01"), "binary keys print as hex");
    assert!(scan.stdout.contains("202 entries") || scan.stdout.contains("201 entries"));

    let bounded = strata(&[
        "sst",
        "scan",
        run,
        "--from",
        "user010",
        "--to",
        "user013",
        "--reverse",
    ]);
    expect_code(&bounded, 0);
    let first = bounded.stdout.find("user012").unwrap();
    let last = bounded.stdout.find("user010").unwrap();
    assert!(first < last, "reverse order:\n{}", bounded.stdout);
    assert!(!bounded.stdout.contains("user013"), "--to is exclusive");
    assert!(bounded.stdout.contains("3 entries"));

    let limited = strata(&["sst", "scan", run, "--limit", "2", "--hex"]);
    expect_code(&limited, 0);
    assert!(
        limited.stdout.contains("0x75736572303030"),
        "--hex: {}",
        limited.stdout
    );
    assert!(limited.stdout.contains("2 entries"));

    let props = strata(&["sst", "props", run]);
    expect_code(&props, 0);
    for field in [
        "entries",
        "min_key",
        "max_key",
        "compression",
        "bloom_bytes",
        "user.strata.keyspace",
        "footer.index",
    ] {
        assert!(
            props.stdout.contains(field),
            "props lack {field}:\n{}",
            props.stdout
        );
    }

    let pages = strata(&["sst", "pages", run]);
    expect_code(&pages, 0);
    assert!(pages.stdout.contains("first key") && pages.stdout.contains("0x00ff01"));

    let get = strata(&["sst", "get", run, "user005"]);
    expect_code(&get, 0);
    assert!(get.stdout.contains("value-005") && get.stdout.contains("searched"));
    let hex_get = strata(&["sst", "get", run, "--key-hex", "00ff01"]);
    expect_code(&hex_get, 0);
    assert!(hex_get.stdout.contains("0x0102"));

    let identify = strata(&[
        "sst",
        "identify",
        run,
        dir.join("meta.log").to_str().unwrap(),
    ]);
    expect_code(&identify, 0);
    assert!(identify.stdout.contains("format version 1"));
    assert!(identify.stdout.contains("not a run file"));

    let verify = strata(&["sst", "verify", run]);
    expect_code(&verify, 0);
    assert!(verify.stdout.contains(" ok "));
}

#[test]
fn sst_json_has_the_documented_fields() {
    let (_tmp, dir) = temp_db();
    let run = a_run(&dir);
    let run = run.to_str().unwrap();

    let scan = strata(&["sst", "scan", run, "--format", "json", "--limit", "3"]).json();
    let entries = scan["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0]["key"], "0x00ff01");
    assert_eq!(entries[1]["key"], "user000");
    assert_eq!(entries[1]["value"], "value-000");
    assert_eq!(entries[1]["kind"], "put");
    assert!(entries[1]["seqno"].is_u64());

    let lines = strata(&["sst", "--format", "jsonl", "scan", run]).jsonl();
    assert!(lines.len() >= 201);
    assert!(lines
        .iter()
        .all(|l| l["key"].is_string() && l["seqno"].is_u64()));

    let props = strata(&["sst", "props", run, "--format", "json"]).json();
    assert_eq!(props["properties"]["entries"], 201);
    assert_eq!(props["properties"]["min_key"], "0x00ff01");
    assert_eq!(props["properties"]["max_key"], "user199");
    assert_eq!(props["properties"]["user"]["strata.keyspace"], "users");
    assert!(props["footer"]["index"]["offset"].is_u64());
    assert!(props["file_size"].is_u64());

    let pages = strata(&["sst", "pages", run, "--format", "json"]).json();
    let page = &pages["pages"][0];
    for field in [
        "page",
        "offset",
        "stored_bytes",
        "raw_bytes",
        "entries",
        "first_seqno",
    ] {
        assert!(page[field].is_u64(), "pages[0].{field}: {page}");
    }
    assert_eq!(page["first_key"], "0x00ff01");

    let get = strata(&["sst", "get", run, "user007", "--format", "json"]).json();
    assert_eq!(get["lookup"], "searched");
    assert_eq!(get["bloom"], "maybe_present");
    assert_eq!(get["found"], true);
    assert_eq!(get["versions"][0]["value"], "value-007");

    let out_of_range = strata(&["sst", "get", run, "zzz", "--format", "json"]);
    expect_code(&out_of_range, 3);
    assert_eq!(out_of_range.json()["lookup"], "out_of_range");

    let verify = strata(&["sst", "verify", run, "--format", "json"]).json();
    assert_eq!(verify["files"][0]["status"], "ok");
    assert_eq!(verify["files"][0]["problem_count"], 0);

    let identify = strata(&["sst", "identify", run, "--format", "json"]).json();
    assert_eq!(identify["paths"][0]["is_run"], true);
    assert_eq!(identify["paths"][0]["format_version"], 1);
    assert_eq!(identify["paths"][0]["supported"], true);
}

#[test]
fn a_flipped_byte_in_a_data_page_is_corruption() {
    let (_tmp, dir) = temp_db();
    let run = a_run(&dir);
    flip_byte(&run, 10); // inside page 0 (data pages start at offset 0)
    let name = run.file_name().unwrap().to_str().unwrap();
    let run = run.to_str().unwrap();

    let verify = strata(&["sst", "verify", run]);
    expect_code(&verify, 1);
    assert!(verify.stdout.contains(name) && verify.stdout.contains("at offset 0"));
    assert!(verify.stdout.contains("checksum"), "{}", verify.stdout);

    let json = strata(&["sst", "verify", run, "--format", "json"]);
    expect_code(&json, 1);
    let json = json.json();
    assert_eq!(json["files"][0]["status"], "corrupt");
    assert_eq!(json["files"][0]["problems"][0]["offset"], 0);

    let scan = strata(&["sst", "scan", run]);
    expect_code(&scan, 1);
    assert!(scan.stderr.contains(name) && scan.stderr.contains("offset 0"));

    // A file that is not a run at all: corruption too, never a panic.
    let meta = dir.join("meta.log");
    let not_run = strata(&["sst", "props", meta.to_str().unwrap()]);
    expect_code(&not_run, 1);
    assert!(
        not_run.stderr.contains("not a strata run file"),
        "{}",
        not_run.stderr
    );
}

#[test]
fn missing_things_and_bad_usage_have_their_exit_codes() {
    let (_tmp, dir) = temp_db();
    let run = a_run(&dir);
    let run = run.to_str().unwrap();
    let missing = dir.join("nope.run");
    let missing = missing.to_str().unwrap();

    let get = strata(&["sst", "get", run, "user0055"]);
    expect_code(&get, 3);
    assert!(get.stderr.contains("not found"));
    expect_code(&strata(&["sst", "scan", missing]), 3);
    expect_code(&strata(&["sst", "props", missing]), 3);
    expect_code(&strata(&["sst", "verify", run, missing]), 3);
    expect_code(&strata(&["sst", "identify", missing]), 3);

    expect_code(&strata(&["sst"]), 2);
    expect_code(&strata(&["sst", "scan"]), 2);
    expect_code(&strata(&["sst", "scan", run, "--limit", "many"]), 2);
    expect_code(&strata(&["sst", "scan", run, "--format", "xml"]), 2);
    let bad_hex = strata(&["sst", "get", run, "--key-hex", "xyz"]);
    expect_code(&bad_hex, 2);
    assert!(bad_hex.stderr.contains("hex"));

    let help = strata(&["--help"]);
    expect_code(&help, 0);
    assert!(help.stdout.contains("Exit codes") && help.stdout.contains("3 not found"));
}
