//! `strata wal`, `strata meta` and `strata db` against databases the library built.

mod cli_support;

use cli_support::{a_run, expect_code, files_with, flip_byte, snapshot, strata, temp_db};

#[test]
fn wal_dump_shows_batches_with_keyspace_names_and_filters() {
    let (_tmp, dir) = temp_db();
    let d = dir.to_str().unwrap();

    let dump = strata(&["wal", "dump", d, "--values"]);
    expect_code(&dump, 0);
    assert!(dump.stdout.contains("logs (1)") && dump.stdout.contains("users (0)"));
    assert!(dump.stdout.contains("new-000") && dump.stdout.contains("world"));
    assert!(dump.stdout.contains("delete"));

    let json = strata(&["wal", "dump", d, "--format", "json", "--values"]).json();
    let segments = json["segments"].as_array().unwrap();
    assert!(segments.len() >= 2);
    let entries: Vec<&serde_json::Value> = segments
        .iter()
        .flat_map(|s| s["batches"].as_array().unwrap())
        .flat_map(|b| b["entries"].as_array().unwrap())
        .collect();
    assert!(entries.len() >= 4);
    let log2 = entries.iter().find(|e| e["key"] == "log2").unwrap();
    assert_eq!(log2["keyspace"], "logs");
    assert_eq!(log2["keyspace_id"], 1);
    assert_eq!(log2["kind"], "put");
    assert_eq!(log2["value"], "world");
    assert_eq!(log2["value_len"], 5);
    assert!(segments[0]["path"].is_string() && segments[0]["size"].is_u64());
    assert!(json["damage"].is_null());

    let logs = strata(&["wal", "dump", d, "--keyspace", "logs", "--format", "jsonl"]).jsonl();
    assert_eq!(logs.len(), 2);
    assert!(logs
        .iter()
        .all(|e| e["keyspace"] == "logs" && e["value"].is_null()));
    assert!(logs
        .iter()
        .all(|e| e["segment"].is_u64() && e["offset"].is_u64()));
    let first = logs[0]["seqno"].as_u64().unwrap();
    let later = strata(&[
        "wal",
        "dump",
        d,
        "--from-seqno",
        &(first + 1).to_string(),
        "--format",
        "jsonl",
    ])
    .jsonl();
    assert!(later.iter().all(|e| e["seqno"].as_u64().unwrap() > first));
    assert_eq!(later.len(), 1);

    let segment = files_with(&dir, "wal").pop().unwrap();
    let one = strata(&["wal", "dump", segment.to_str().unwrap(), "--values"]);
    expect_code(&one, 0);
    assert!(one.stdout.contains("world"));

    expect_code(&strata(&["wal", "dump", d, "--keyspace", "nope"]), 3);
    expect_code(
        &strata(&["wal", "dump", dir.join("missing").to_str().unwrap()]),
        3,
    );
}

#[test]
fn a_damaged_wal_segment_in_the_middle_is_corruption_naming_the_file() {
    let (_tmp, dir) = temp_db();
    let d = dir.to_str().unwrap();
    // The first segment holding a batch, which is not the last segment: cut it mid-record.
    let segments = files_with(&dir, "wal");
    let victim = segments
        .iter()
        .take(segments.len() - 1)
        .find(|s| std::fs::metadata(s).unwrap().len() > 40)
        .expect("a non-last segment with data")
        .clone();
    let len = std::fs::metadata(&victim).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&victim)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let name = victim.file_name().unwrap().to_str().unwrap();

    let dump = strata(&["wal", "dump", d]);
    expect_code(&dump, 1);
    assert!(
        dump.stderr.contains(name) && dump.stderr.contains("offset"),
        "{}",
        dump.stderr
    );
    let json = strata(&["wal", "dump", d, "--format", "json"]);
    expect_code(&json, 1);
    assert!(json.json()["damage"]["path"]
        .as_str()
        .unwrap()
        .ends_with(name));

    let verify = strata(&["db", "verify", d]);
    expect_code(&verify, 1);
    assert!(verify.stdout.contains(name), "{}", verify.stdout);

    // The database does not open either: corruption, named, no panic.
    let stats = strata(&["db", "stats", d]);
    expect_code(&stats, 1);
    assert!(stats.stderr.contains(name));
}

#[test]
fn meta_dump_shows_records_and_state() {
    let (_tmp, dir) = temp_db();
    let d = dir.to_str().unwrap();
    let dump = strata(&["meta", "dump", d]);
    expect_code(&dump, 0);
    for word in [
        "CreateKeyspace",
        "PrepareRun",
        "CreateRun",
        "Dumped",
        "users",
        "logs",
        "resulting state",
    ] {
        assert!(dump.stdout.contains(word), "no {word}:\n{}", dump.stdout);
    }
    let json = strata(&["meta", "dump", d, "--format", "json"]).json();
    let records = json["records"].as_array().unwrap();
    assert_eq!(records[0]["kind"], "CreateKeyspace");
    assert_eq!(records[0]["fields"]["name"], "users");
    assert!(records[0]["offset"].is_u64() && records[0]["frame"].is_u64());
    let create_run = records.iter().find(|r| r["kind"] == "CreateRun").unwrap();
    assert_eq!(create_run["fields"]["info"]["max_key"], "user199");
    let users = &json["state"]["keyspaces"][0];
    assert_eq!(users["name"], "users");
    assert_eq!(users["runs"][0]["entries"], 201);
    assert!(users["runs"][0]["file"].as_str().unwrap().ends_with(".run"));
    assert!(json["state"]["prepared_runs"]
        .as_array()
        .unwrap()
        .is_empty());
    assert!(json["state"]["next_run_id"].is_u64());

    let lines = strata(&["meta", "dump", d, "--format", "jsonl"]).jsonl();
    assert_eq!(lines.last().unwrap()["type"], "state");
    assert_eq!(lines[0]["type"], "record");

    // A damaged frame followed by intact ones: corruption in meta.log, at the frame's offset.
    cli_support::flip_byte(&dir.join("meta.log"), 30);
    let bad = strata(&["meta", "dump", d]);
    expect_code(&bad, 1);
    assert!(
        bad.stderr.contains("meta.log at offset 16"),
        "{}",
        bad.stderr
    );
    let verify = strata(&["db", "verify", d]);
    expect_code(&verify, 1);
    assert!(verify.stdout.contains("meta.log"));

    let empty = tempfile::tempdir().unwrap();
    let not_db = strata(&["meta", "dump", empty.path().to_str().unwrap()]);
    expect_code(&not_db, 3);
    assert!(not_db.stderr.contains("not a strata database"));
}

#[test]
fn db_stats_reads_without_changing_anything_and_refuses_a_locked_db() {
    let (_tmp, dir) = temp_db();
    let d = dir.to_str().unwrap();
    let before = snapshot(&dir);

    let stats = strata(&["db", "stats", d]);
    expect_code(&stats, 0);
    assert!(stats.stdout.contains("Compaction Stats [users]"));
    assert!(stats.stdout.contains("L0") && stats.stdout.contains("Sum"));
    assert!(stats.stdout.contains("write amplification") && stats.stdout.contains("bloom"));

    let ranges = strata(&["db", "stats", d, "--ranges"]);
    expect_code(&ranges, 0);
    assert!(ranges.stdout.contains("-inf") && ranges.stdout.contains("+inf"));
    let json = strata(&["db", "stats", d, "--format", "json", "--ranges"]).json();
    let users = json["keyspaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["keyspace"] == "users")
        .unwrap();
    assert_eq!(users["runs"], 1);
    assert_eq!(users["run_entries"], 201);
    assert!(users["bytes_on_disk"].as_u64().unwrap() > 0);
    assert!(users["logical_bytes"].as_u64().unwrap() > 0);
    assert_eq!(users["memtable_entries"], 2, "the replayed WAL");
    for field in [
        "dumps",
        "dump_bytes_in",
        "dump_bytes_out",
        "compactions",
        "compaction_bytes_in",
        "compaction_bytes_out",
        "sorted_runs",
    ] {
        assert!(users[field].is_u64(), "keyspaces[].{field}");
    }
    assert!(users.get("write_amplification").is_some());
    assert_eq!(users["space_amplification"], 1.0);
    assert_eq!(users["levels"][0]["level"], 0);
    assert_eq!(users["levels"][0]["runs"], 1);
    assert_eq!(
        users["ranges"][0]["begin"],
        serde_json::Value::Null,
        "unbounded"
    );
    assert_eq!(users["ranges"][0]["runs"], 1);
    for field in [
        "write_amplification",
        "space_amplification",
        "read_amplification",
        "memtable",
        "cache",
        "bloom",
        "stalls",
    ] {
        assert!(json["totals"].get(field).is_some(), "totals.{field}");
    }
    assert!(
        json["stats"]["keyspaces"].is_array(),
        "the engine's DbStats"
    );

    assert_eq!(
        snapshot(&dir),
        before,
        "read-only commands must not modify the database"
    );

    let db = cli_support::open(&dir);
    let locked = strata(&["db", "stats", d]);
    expect_code(&locked, 4);
    assert!(locked.stderr.contains("in use"), "{}", locked.stderr);
    expect_code(&strata(&["db", "get", d, "users", "user002"]), 4);
    // Inspection without opening still works.
    expect_code(&strata(&["meta", "dump", d]), 0);
    db.close().unwrap();

    expect_code(
        &strata(&["db", "stats", dir.join("missing").to_str().unwrap()]),
        3,
    );
}

#[test]
fn db_get_scan_put_delete_compact() {
    let (_tmp, dir) = temp_db();
    let d = dir.to_str().unwrap();
    let before = snapshot(&dir);

    let get = strata(&["db", "get", d, "users", "user000"]);
    expect_code(&get, 0);
    assert_eq!(get.stdout.trim(), "new-000", "the WAL's newer value");
    let deleted = strata(&["db", "get", d, "users", "user001"]);
    expect_code(&deleted, 3);
    assert!(deleted.stderr.contains("not found"));
    expect_code(&strata(&["db", "get", d, "nokeyspace", "user000"]), 3);
    let json = strata(&[
        "db",
        "get",
        d,
        "users",
        "--key-hex",
        "0x00ff01",
        "--format",
        "json",
    ])
    .json();
    assert_eq!(json["found"], true);
    assert_eq!(json["value"], "0x0102");

    let scan = strata(&[
        "db", "scan", d, "users", "--prefix", "user00", "--limit", "3",
    ]);
    expect_code(&scan, 0);
    assert!(scan.stdout.contains("new-000") && !scan.stdout.contains("user001"));
    assert!(scan.stdout.contains("user003") && scan.stdout.contains("3 pairs"));
    let json = strata(&[
        "db",
        "scan",
        d,
        "users",
        "--from",
        "user100",
        "--to",
        "user110",
        "--reverse",
        "--format",
        "json",
    ])
    .json();
    assert_eq!(json["count"], 10);
    assert_eq!(json["entries"][0]["key"], "user109");
    assert_eq!(json["entries"][9]["value"], "value-100");
    assert_eq!(
        snapshot(&dir),
        before,
        "get and scan must not modify the database"
    );

    let put = strata(&["db", "put", d, "logs", "log3", "again"]);
    expect_code(&put, 0);
    assert!(put.stdout.contains("seqno"));
    expect_code(&strata(&["db", "put", d, "newks", "k", "v"]), 3);
    expect_code(&strata(&["db", "put", d, "newks", "k", "v", "--create"]), 0);
    expect_code(&strata(&["db", "delete", d, "logs", "log1"]), 0);

    let compact = strata(&["db", "compact", d, "--format", "json"]).json();
    let logs = compact["keyspaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["keyspace"] == "logs")
        .unwrap();
    assert_eq!(logs["runs_before"], 0);
    assert_eq!(logs["runs_after"], 1);
    assert_eq!(logs["space_amplification_after"], 1.0);
    let users = strata(&[
        "db",
        "compact",
        d,
        "--keyspace",
        "users",
        "--format",
        "json",
    ])
    .json();
    assert_eq!(users["keyspaces"].as_array().unwrap().len(), 1);
    assert_eq!(users["keyspaces"][0]["runs_after"], 1);
    expect_code(&strata(&["db", "compact", d, "--keyspace", "nope"]), 3);

    let lines = strata(&["db", "scan", d, "logs", "--format", "jsonl"]).jsonl();
    let keys: Vec<&str> = lines.iter().map(|l| l["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["log2", "log3"]);
    expect_code(&strata(&["db", "get", d, "newks", "k"]), 0);

    expect_code(
        &strata(&["db", "scan", d, "users", "--prefix", "a", "--from", "b"]),
        2,
    );
    expect_code(&strata(&["db", "put", d, "users"]), 2);
    expect_code(&strata(&["db"]), 2);
}

#[test]
fn db_verify_reports_each_problem_with_file_and_offset() {
    let (_tmp, dir) = temp_db();
    let d = dir.to_str().unwrap();
    let ok = strata(&["db", "verify", d]);
    expect_code(&ok, 0);
    assert!(ok.stdout.contains("OK"));
    let json = strata(&["db", "verify", d, "--format", "json"]).json();
    assert_eq!(json["ok"], true);
    assert_eq!(json["runs_checked"], 1);
    assert!(json["wal_batches_checked"].as_u64().unwrap() >= 3);

    let run = a_run(&dir);
    flip_byte(&run, 10);
    let name = run.file_name().unwrap().to_str().unwrap();
    let bad = strata(&["db", "verify", d]);
    expect_code(&bad, 1);
    assert!(
        bad.stdout.contains(name) && bad.stdout.contains("checksum"),
        "{}",
        bad.stdout
    );
    let json = strata(&["db", "verify", d, "--format", "json"]);
    expect_code(&json, 1);
    let json = json.json();
    assert_eq!(json["ok"], false);
    assert!(json["problems"][0]["path"]
        .as_str()
        .unwrap()
        .ends_with(name));
    assert_eq!(json["problems"][0]["offset"], 0);

    expect_code(
        &strata(&["db", "verify", dir.join("missing").to_str().unwrap()]),
        3,
    );
}

#[test]
fn read_only_commands_leave_a_database_with_pending_work_untouched() {
    // Several dumps in a row, closed at once: the background compaction may not have merged
    // them, and the replayed WAL holds more. A read-only open must not write any of it.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    {
        let db = cli_support::open(&dir);
        let ks = db
            .keyspace("busy", strata::KeyspaceOptions::default())
            .unwrap();
        for round in 0..6 {
            for i in 0..50 {
                ks.put(format!("k{i:03}"), format!("round-{round}"))
                    .unwrap();
            }
            db.flush().unwrap();
        }
        ks.put("k000", "in-the-wal").unwrap();
        db.close().unwrap();
    }
    let d = dir.to_str().unwrap();
    let before = snapshot(&dir);
    expect_code(&strata(&["db", "stats", d, "--ranges"]), 0);
    let get = strata(&["db", "get", d, "busy", "k000"]);
    expect_code(&get, 0);
    assert_eq!(get.stdout.trim(), "in-the-wal");
    let scan = strata(&["db", "scan", d, "busy", "--format", "jsonl"]).jsonl();
    assert_eq!(scan.len(), 50);
    assert_eq!(scan[1]["value"], "round-5");
    assert_eq!(snapshot(&dir), before);
}
