//! File imports: CSV written to a real OpenSSH sshd on loopback, and to S3 (blobs).

use serde_json::{json, Value};
use sluice_core::runs::retry_errors;
use sluice_e2e::*;
use sluice_model::JobStatus;

fn sftp_bundle(ssh: &SshServer, dir: &str, extra_import: Value, host_key: String) -> Value {
    let mut imp = json!({
        "_id": "out", "name": "out", "_connectionId": "sftp", "type": "sftp",
        "sftp": {"directoryPath": dir, "fileName": "orders-{{page.index}}.csv"},
        "file": {"type": "csv", "csv": {"columns": ["name", "qty"]}}
    });
    merge(&mut imp, extra_import);
    json!({
        "connections": [{"_id": "sftp", "name": "sftp", "type": "sftp", "sftp": {"host": "127.0.0.1", "port": ssh.port, "username": ssh.user, "privateKey": ssh.private_key_pem(), "hostKey": host_key}}],
        "exports": [{"_id": "exp", "name": "exp", "type": "webhook", "pageSize": 100}],
        "imports": [imp],
        "flows": [{"_id": "f", "name": "f", "pageGenerators": [{"_exportId": "exp"}], "pageProcessors": [{"type": "import", "_importId": "out"}]}]
    })
}

#[tokio::test]
async fn csv_lands_on_sftp_under_its_final_name() {
    let ssh = SshServer::start().expect("sshd starts");
    let dir = ssh.root().join("out/nested");
    let h = Harness::new();
    h.load(sftp_bundle(
        &ssh,
        dir.to_str().unwrap(),
        json!({}),
        ssh.host_key_line(),
    ))
    .await;
    let job = h.run("f", orders(3)).await;
    assert_eq!(
        job.status,
        JobStatus::Completed,
        "{:?}",
        h.errors(&job.id).await
    );
    assert_eq!(job.num_success, 3);
    let written = std::fs::read_to_string(dir.join("orders-0.csv")).unwrap();
    assert_eq!(written, "name,qty\norder 0,0\norder 1,1\norder 2,2\n");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary files left: {leftovers:?}"
    );
}

#[tokio::test]
async fn overwrite_policies_skip_fail_and_overwrite() {
    let ssh = SshServer::start().unwrap();
    let dir = ssh.root().join("p");
    std::fs::create_dir_all(&dir).unwrap();
    for (policy, expect_status, old_kept) in [
        ("skip", "ignored", true),
        ("fail", "error", true),
        ("overwrite", "success", false),
    ] {
        std::fs::write(dir.join("orders-0.csv"), "old\n").unwrap();
        let h = Harness::new();
        h.load(sftp_bundle(
            &ssh,
            dir.to_str().unwrap(),
            json!({"sftp": {"overwrite": policy}}),
            ssh.host_key_line(),
        ))
        .await;
        let job = h.run("f", orders(2)).await;
        assert_counts(&job, 2);
        let (s, e, i) = (job.num_success, job.num_error, job.num_ignore);
        match expect_status {
            "ignored" => assert_eq!((s, e, i), (0, 0, 2), "{policy}"),
            "error" => {
                assert_eq!((s, e, i), (0, 2, 0), "{policy}");
                assert_eq!(h.errors(&job.id).await[0].code, "file_exists");
            }
            _ => assert_eq!((s, e, i), (2, 0, 0), "{policy}"),
        }
        let now = std::fs::read_to_string(dir.join("orders-0.csv")).unwrap();
        assert_eq!(now == "old\n", old_kept, "{policy}: {now}");
    }
}

#[tokio::test]
async fn a_wrong_host_key_is_refused_and_nothing_is_written() {
    let ssh = SshServer::start().unwrap();
    let dir = ssh.root().join("never");
    let h = Harness::new();
    h.load(sftp_bundle(
        &ssh,
        dir.to_str().unwrap(),
        json!({}),
        ssh.other_key_line(),
    ))
    .await;
    let job = h.run("f", orders(2)).await;
    assert_eq!((job.num_success, job.num_error), (0, 2));
    let errors = h.errors(&job.id).await;
    assert_eq!(errors[0].code, "host_key_mismatch");
    assert!(
        errors[0].message.contains("not the pinned key"),
        "{}",
        errors[0].message
    );
    assert!(!dir.exists(), "nothing written to an unverified server");
}

#[tokio::test]
async fn a_server_that_is_down_gives_sftp_errors() {
    let mut ssh = SshServer::start().unwrap();
    let bundle = sftp_bundle(
        &ssh,
        ssh.root().to_str().unwrap(),
        json!({}),
        ssh.host_key_line(),
    );
    ssh.stop();
    let h = Harness::new();
    h.load(bundle).await;
    let job = h.run("f", orders(2)).await;
    assert_eq!((job.num_success, job.num_error), (0, 2));
    let e = &h.errors(&job.id).await[0];
    assert_eq!(e.code, "sftp_error");
    assert!(
        e.message.contains("cannot connect") && e.message.contains("2 attempts"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn files_go_to_s3_through_the_blobs_port() {
    let h = Harness::new();
    h.load(json!({
        "connections": [{"_id": "s3", "name": "s3", "type": "s3", "s3": {"bucket": "exports", "prefix": "daily"}}],
        "exports": [{"_id": "exp", "name": "exp", "type": "webhook"}],
        "imports": [{"_id": "out", "name": "out", "_connectionId": "s3", "type": "s3", "s3": {"directoryPath": "orders", "fileName": "{{flow._id}}-{{page.index}}.ndjson"}, "file": {"type": "ndjson"}}],
        "flows": [{"_id": "f", "name": "f", "pageGenerators": [{"_exportId": "exp"}], "pageProcessors": [{"type": "import", "_importId": "out"}]}]
    }))
    .await;
    let job = h.run("f", orders(2)).await;
    assert_eq!(job.num_success, 2, "{:?}", h.errors(&job.id).await);
    let body = h
        .sluice()
        .blobs
        .get("exports", "daily/orders/f-0.ndjson")
        .await
        .unwrap()
        .expect("object written");
    let lines: Vec<Value> = String::from_utf8(body.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, orders(2));
}

/// A run whose file import writes `orders-{{page.index}}.csv` after an http import that
/// refuses "order 0" twice: the first run writes pages 0 and 1 (page 0 without order 0), the
/// first retry's one page (order 0 refused again) is index 2 and writes nothing, the second
/// retry's is index 3. No retry replaces a file of a run before it, and every retry belongs
/// to the first run's flow execution group.
#[tokio::test]
async fn retries_number_their_pages_on_and_never_replace_the_first_runs_files() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let refused = std::sync::Arc::new(AtomicUsize::new(0));
    let sink = {
        let refused = refused.clone();
        TestServer::start(move |_, r| {
            if r.json()["name"] == "order 0" && refused.fetch_add(1, Ordering::SeqCst) < 2 {
                Answer::json(400, json!({"error": "not yet"}))
            } else {
                Answer::json(201, json!({}))
            }
        })
        .await
    };
    let ssh = SshServer::start().unwrap();
    let dir = ssh.root().join("retried");
    let mut bundle = sftp_bundle(
        &ssh,
        dir.to_str().unwrap(),
        json!({"sftp": {"overwrite": "fail"}}),
        ssh.host_key_line(),
    );
    let group_uri = json!({"http": {"relativeURI": "/orders?group={{job.flowExecutionGroupId}}"}});
    let http = http_bundle(&sink.base_url, group_uri, json!({}));
    bundle["connections"]
        .as_array_mut()
        .unwrap()
        .push(http["connections"][0].clone());
    bundle["imports"]
        .as_array_mut()
        .unwrap()
        .push(http["imports"][0].clone());
    bundle["exports"][0]["pageSize"] = json!(2);
    bundle["flows"][0]["pageProcessors"] =
        json!([{"type": "import", "_importId": "imp"}, {"type": "import", "_importId": "out"}]);
    let h = Harness::new();
    h.load(bundle).await;

    let first = h.run("f", orders(4)).await;
    assert_eq!((first.num_success, first.num_error), (3, 1));
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let page0 = "name,qty\norder 1,1\n";
    let page1 = "name,qty\norder 2,2\norder 3,3\n";
    assert_eq!(
        (read("orders-0.csv"), read("orders-1.csv")),
        (page0.into(), page1.into())
    );

    let sluice = h.sluice();
    let mut jobs = vec![first.clone()];
    for _ in 0..2 {
        let before = jobs.last().unwrap().id.clone();
        let started = retry_errors(&sluice, &before, None).await.unwrap();
        jobs.push(h.wait(&started.job_id).await);
    }
    let (retry1, retry2) = (&jobs[1], &jobs[2]);
    assert_eq!(
        (retry1.num_error, retry1.first_page_index),
        (1, 2),
        "{retry1:?}"
    );
    assert_eq!(
        (retry2.num_success, retry2.first_page_index),
        (1, 3),
        "{retry2:?}"
    );
    for retry in [retry1, retry2] {
        assert_eq!(retry.flow_execution_group_id, first.flow_execution_group_id);
    }
    let group = format!("group={}", first.flow_execution_group_id.clone().unwrap());
    let queries: Vec<String> = sink.received().iter().map(|r| r.query.clone()).collect();
    assert_eq!(queries, vec![group; 6], "templates see the group");
    // The files of the first run are as it wrote them; the retry that went through wrote its own
    // (with the `fail` overwrite policy, one name used twice would have been an error).
    assert_eq!(
        (read("orders-0.csv"), read("orders-1.csv")),
        (page0.into(), page1.into())
    );
    assert_eq!(read("orders-3.csv"), "name,qty\norder 0,0\n");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["orders-0.csv", "orders-1.csv", "orders-3.csv"]);
}

/// An SFTP import writes XML from its own template: the page's records as `records`, each
/// value escaped as XML (so `<b>` & co stay text), named by the page's first record.
#[tokio::test]
async fn an_xml_file_from_a_template_lands_on_sftp_named_by_the_first_record() {
    let ssh = SshServer::start().expect("sshd starts");
    let dir = ssh.root().join("xml");
    let h = Harness::new();
    let template = concat!(
        "<orders job=\"{{job._id}}\">\n",
        "{{#each records}}  <order qty=\"{{this.qty}}\">{{this.name}}</order>\n{{/each}}",
        "</orders>\n"
    );
    h.load(sftp_bundle(
        &ssh,
        dir.to_str().unwrap(),
        json!({"sftp": {"fileName": "{{record.customer}}-{{page.index}}.xml"},
               "file": {"type": "template", "template": {"content": template, "escape": "xml"}}}),
        ssh.host_key_line(),
    ))
    .await;
    let records = vec![
        json!({"customer": "acme", "name": "Bolts <M6> & \"nuts\"", "qty": 3}),
        json!({"customer": "other", "name": "Tom's washers", "qty": 10}),
    ];
    let job = h.run("f", records).await;
    assert_eq!(job.num_success, 2, "{:?}", h.errors(&job.id).await);
    let written =
        std::fs::read_to_string(dir.join("acme-0.xml")).expect("named by the first record");
    assert_eq!(
        written,
        format!(
            "<orders job=\"{}\">\n  <order qty=\"3\">Bolts &lt;M6&gt; &amp; &quot;nuts&quot;</order>\n  <order qty=\"10\">Tom&apos;s washers</order>\n</orders>\n",
            job.id
        )
    );
}

/// An S3 import writes fixed-width lines from its template (helpers pad the columns), and
/// a record value that would make the name a path fails the page instead of steering it.
#[tokio::test]
async fn a_fixed_width_file_from_a_template_goes_to_s3_and_a_name_cannot_become_a_path() {
    let h = Harness::new();
    let content =
        "{{#each records}}{{padRight this.sku 8 \" \"}}{{padLeft this.qty 5 \"0\"}}\n{{/each}}";
    h.load(json!({
        "connections": [{"_id": "s3", "name": "s3", "type": "s3", "s3": {"bucket": "exports"}}],
        "exports": [{"_id": "exp", "name": "exp", "type": "webhook"}],
        "imports": [{"_id": "out", "name": "out", "_connectionId": "s3", "type": "s3",
                     "s3": {"directoryPath": "stock/{{record.region}}", "fileName": "{{record.warehouse}}.txt"},
                     "file": {"type": "template", "template": {"content": content}}}],
        "flows": [{"_id": "f", "name": "f", "pageGenerators": [{"_exportId": "exp"}], "pageProcessors": [{"type": "import", "_importId": "out"}]}]
    }))
    .await;
    let rows = |region: &str, warehouse: &str| {
        vec![
            json!({"region": region, "warehouse": warehouse, "sku": "A-1", "qty": 42}),
            json!({"region": region, "warehouse": warehouse, "sku": "B-22", "qty": 7}),
        ]
    };
    let job = h.run("f", rows("eu", "north")).await;
    assert_eq!(job.num_success, 2, "{:?}", h.errors(&job.id).await);
    let body = h
        .sluice()
        .blobs
        .get("exports", "stock/eu/north.txt")
        .await
        .unwrap()
        .expect("object written");
    assert_eq!(
        String::from_utf8(body.to_vec()).unwrap(),
        "A-1     00042\nB-22    00007\n"
    );

    for (region, warehouse, why) in [
        ("eu", "../../elsewhere", "not a plain file name"),
        ("..", "north", "climbs out with '..'"),
    ] {
        let hostile = h.run("f", rows(region, warehouse)).await;
        assert_eq!((hostile.num_success, hostile.num_error), (0, 2));
        let errors = h.errors(&hostile.id).await;
        assert!(errors[0].message.contains(why), "{}", errors[0].message);
    }
}

#[test]
fn a_template_file_format_is_checked_naming_the_field() {
    let import = |file: Value| -> sluice_model::Import {
        serde_json::from_value(
            json!({"_id": "i", "name": "i", "_connectionId": "c", "type": "s3",
            "s3": {"fileName": "x.xml"}, "file": file}),
        )
        .unwrap()
    };
    let fields = |i: sluice_model::Import| -> Vec<String> {
        i.validate()
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| e.field)
            .collect()
    };
    assert_eq!(
        fields(import(json!({"type": "template"}))),
        ["file.template"]
    );
    assert_eq!(
        fields(import(
            json!({"type": "template", "template": {"content": "{{#each records}}{{nope this}}{{/each}}"}})
        )),
        ["file.template.content"]
    );
    assert_eq!(
        fields(import(json!({"type": "csv", "template": {"content": "x"}}))),
        ["file.template"]
    );
    import(json!({"type": "template", "template": {"content": "{{#each records}}{{this.id}}\n{{/each}}", "escape": "xml"}}))
        .validate()
        .unwrap();
    let export: sluice_model::Export = serde_json::from_value(json!({"_id": "e", "name": "e",
        "type": "s3", "s3": {"bucket": "b"}, "file": {"type": "template"}}))
    .unwrap();
    assert_eq!(export.validate().unwrap_err().0[0].field, "file.type");
}
