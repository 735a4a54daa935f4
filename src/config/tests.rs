//! Parsing, expansion and refusal of configs.

use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "PW" => Some("s3cret".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

/// Every variable set, ports to a port.
fn any_env(name: &str) -> Option<String> {
    Some(if name.ends_with("PORT") {
        "9464".into()
    } else {
        "x".into()
    })
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "test.toml", &env)
}

const BASE: &str = r#"
[control]
database_url = "postgres://u:${PW}@h/db"
[[pipeline]]
name = "clicks"
[pipeline.source]
bucket = "stage"
[pipeline.destination]
type = "file"
directory = "/tmp/out"
"#;

fn refusal(text: &str) -> String {
    parse(text)
        .expect_err("config should be refused")
        .to_string()
}

#[test]
fn example_config_parses() {
    let text = include_str!("../../config/stageload.example.toml");
    let c = Config::parse(text, "example", &any_env).expect("example config must parse");
    assert_eq!(c.pipelines.len(), 5);
    assert_eq!(c.pipelines[0].retry_duration(), Duration::from_secs(3600));
    assert_eq!(c.pipelines[1].retry_duration(), Duration::from_secs(300));
    assert_eq!(c.pipelines[1].destination.kind(), "elasticsearch");
    assert_eq!(c.pipelines[4].source.format, Framing::Parquet);
}

#[test]
fn demo_config_parses() {
    let text = include_str!("../../config/demo.toml");
    Config::parse(text, "demo", &any_env).expect("demo config must parse");
}

#[test]
fn expands_variables_and_redacts_secrets() {
    let c = parse(BASE).unwrap();
    assert_eq!(c.control.database_url.expose(), "postgres://u:s3cret@h/db");
    let debug = format!("{c:?}");
    assert!(
        !debug.contains("s3cret"),
        "secret leaked into Debug: {debug}"
    );
}

#[test]
fn expansion_rules() {
    assert_eq!(expand("a${PW}b", &env).unwrap(), "as3cretb");
    assert_eq!(expand("${NOPE:-dflt}", &env).unwrap(), "dflt");
    assert_eq!(expand("${EMPTY:-dflt}", &env).unwrap(), "dflt");
    assert_eq!(expand("$$HOME $5", &env).unwrap(), "$HOME $5");
    assert!(expand("${NOPE}", &env).unwrap_err().contains("NOPE"));
    assert!(expand("${PW", &env).is_err());
}

#[test]
fn unset_variable_names_the_field() {
    let msg = refusal(&BASE.replace("${PW}", "${MISSING_PW}"));
    assert!(
        msg.contains("control.database_url") && msg.contains("MISSING_PW"),
        "{msg}"
    );
}

#[test]
fn unknown_key_names_pipeline_and_field() {
    let msg = refusal(&BASE.replace("bucket = \"stage\"", "bucket = \"stage\"\nbukket = 1"));
    assert!(
        msg.contains("pipeline \"clicks\".source") && msg.contains("bukket"),
        "{msg}"
    );
}

#[test]
fn key_time_zone_is_an_iana_name() {
    assert_eq!(
        parse(BASE).unwrap().pipelines[0].source.key_time_zone,
        chrono_tz::UTC
    );
    let la = BASE.replace(
        "bucket = \"stage\"",
        "bucket = \"stage\"\nkey_time_zone = \"America/Los_Angeles\"",
    );
    assert_eq!(
        parse(&la).unwrap().pipelines[0].source.key_time_zone,
        chrono_tz::America::Los_Angeles
    );
    let msg = refusal(&la.replace("Los_Angeles", "Los_Angles"));
    assert!(
        msg.contains("pipeline \"clicks\".source.key_time_zone")
            && msg.contains("\"America/Los_Angles\" is not an IANA time zone name"),
        "{msg}"
    );
}

#[test]
fn out_of_range_values_are_refused() {
    let msg = refusal(&format!("{BASE}\n[pipeline.buffer]\nsize_mib = 0\n"));
    // The buffer table after destination belongs to the same pipeline.
    assert!(msg.contains("pipeline \"clicks\".buffer.size_mib"), "{msg}");
    let msg = refusal(&BASE.replace(
        "name = \"clicks\"",
        "name = \"clicks\"\nretry_duration_s = 9000",
    ));
    assert!(
        msg.contains("retry_duration_s") && msg.contains("7200"),
        "{msg}"
    );
}

#[test]
fn duplicate_pipeline_names_are_refused() {
    let second = BASE.split("[[pipeline]]").nth(1).unwrap();
    let msg = refusal(&format!("{BASE}\n[[pipeline]]{second}"));
    assert!(msg.contains("duplicate pipeline name \"clicks\""), "{msg}");
}

#[test]
fn wrong_type_and_unknown_destination() {
    let msg = refusal(&BASE.replace("bucket = \"stage\"", "bucket = 5"));
    assert!(msg.contains("pipeline \"clicks\".source.bucket"), "{msg}");
    let msg = refusal(&BASE.replace("type = \"file\"", "type = \"kafka\""));
    assert!(
        msg.contains("pipeline \"clicks\".destination") && msg.contains("kafka"),
        "{msg}"
    );
}

#[test]
fn copy_options_with_a_terminator_are_refused() {
    let text = BASE.replace(
        "type = \"file\"\ndirectory = \"/tmp/out\"",
        "type = \"redshift\"\nurl = \"postgres://l@c:5439/dev\"\ntable = \"t\"\niam_role = \"arn:x\"\ncopy_options = \"JSON 'auto'; DROP TABLE t\"",
    );
    let msg = refusal(&text);
    assert!(
        msg.contains("pipeline \"clicks\".destination.copy_options"),
        "{msg}"
    );
    assert_eq!(statement_terminator("DELIMITER ';' JSON 'a''b;'"), None);
    assert_eq!(statement_terminator("GZIP; x"), Some(4));
}

#[test]
fn syntax_errors_carry_a_line() {
    let msg = refusal("[control\n");
    assert!(msg.contains("line 1"), "{msg}");
}

#[test]
fn merge_keys_must_be_copied_columns() {
    let redshift = |extra: &str| {
        BASE.replace(
            "type = \"file\"\ndirectory = \"/tmp/out\"",
            &format!(
                "type = \"redshift\"\nurl = \"postgres://l@c:5439/dev\"\ntable = \"t\"\n\
                 iam_role = \"arn:x\"\n{extra}"
            ),
        )
    };
    for (extra, field) in [
        ("merge_keys = [\"id\"]", "merge_keys"),
        (
            "columns = [\"id\", \"ts\"]\nmerge_keys = [\"uid\"]",
            "merge_keys",
        ),
        (
            "columns = [\"id\", \"ts\"]\nmerge_keys = [\"id\"]\nmerge_order_by = \"t\"",
            "merge_order_by",
        ),
        (
            "columns = [\"id\", \"ts\"]\nmerge_order_by = \"ts\"",
            "merge_order_by",
        ),
    ] {
        let msg = refusal(&redshift(extra));
        assert!(
            msg.contains(&format!("pipeline \"clicks\".destination.{field}")),
            "{extra}: {msg}"
        );
    }
    let ok = redshift("columns = [\"id\", \"ts\"]\nmerge_keys = [\"ID\"]\nmerge_order_by = \"ts\"");
    parse(&ok).expect("merge on id, newest ts wins");
}

#[test]
fn expansion_errors_name_the_field_not_the_value() {
    for bad in [
        "postgres://u:hunter2${PW@h/db",
        "postgres://u:${hunter2 pw}@h/db",
    ] {
        let msg = refusal(&BASE.replace("postgres://u:${PW}@h/db", bad));
        assert!(msg.contains("control.database_url"), "{msg}");
        assert!(!msg.contains("hunter2"), "value leaked: {msg}");
    }
}

#[test]
fn syntax_and_type_errors_do_not_quote_values() {
    // An unterminated string: toml's own message would print the whole line.
    let msg = refusal(&BASE.replace("@h/db\"", "@h/db hunter2"));
    assert!(msg.contains("line 3"), "{msg}");
    assert!(!msg.contains("hunter2"), "value leaked: {msg}");
    let msg = refusal(&BASE.replace("[[pipeline]]", "pool_size = \"hunter2\"\n[[pipeline]]"));
    assert!(msg.contains("control.pool_size"), "{msg}");
    assert!(!msg.contains("hunter2"), "value leaked: {msg}");
}

#[test]
fn keyvalue_database_urls_are_masked() {
    let text = BASE.replace(
        "postgres://u:${PW}@h/db",
        "host=h user=u password=${PW} dbname=db",
    );
    let c = parse(&text).unwrap();
    assert_eq!(
        c.control.database_url.expose(),
        "host=h user=u password=s3cret dbname=db"
    );
    let shown = format!("{c:?} {}", c.control.database_url);
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("password=***"), "{shown}");
}

#[test]
fn format_options_are_checked() {
    let with = |source: &str| {
        BASE.replace(
            "bucket = \"stage\"",
            &format!("bucket = \"stage\"\n{source}"),
        )
    };
    let c = parse(&with(
        "format = \"csv\"\ncsv_delimiter = \";\"\ncsv_quote = \"'\"",
    ))
    .unwrap();
    let f = c.pipelines[0].source.format_options();
    assert_eq!(
        (f.framing, f.csv_delimiter, f.csv_quote),
        (Framing::Csv, b';', b'\'')
    );
    let c = parse(&with("format = \"json_array\"\njson_array = \"/Records\"")).unwrap();
    assert_eq!(
        c.pipelines[0].source.format_options().json_array,
        "/Records"
    );
    let c = parse(&with(
        "format = \"lines\"\n[pipeline.source.multiline]\nstart_pattern = '^\\d{4}-'",
    ))
    .unwrap();
    let m = c.pipelines[0].source.format_options().multiline.unwrap();
    assert_eq!((m.max_lines, m.max_bytes), (500, 1 << 20));
    assert!(m.start.is_match(b"2024-01-01 x"));
    for format in [
        "alb",
        "elb",
        "vpc_flow",
        "cloudfront",
        "s3_access",
        "cloudtrail",
        "parquet",
    ] {
        parse(&with(&format!("format = \"{format}\""))).expect(format);
    }
    for (source, field, needle) in [
        ("format = \"orc\"", "source.format", "ORC is read only by Redshift's COPY"),
        ("csv_delimiter = \";\"", "source.csv_delimiter", "applies only to format = \"csv\""),
        ("format = \"csv\"\ncsv_delimiter = \";;\"", "source.csv_delimiter", "one ASCII"),
        ("format = \"csv\"\ncsv_quote = \"\\n\"", "source.csv_quote", "one ASCII"),
        ("format = \"csv\"\ncsv_quote = \",\"\ncsv_delimiter = \",\"", "source.csv_quote", "differ"),
        ("format = \"json_array\"\njson_array = \"Records\"", "source.json_array", "\"/Records\""),
        ("format = \"cloudtrail\"\njson_array = \"/Records\"", "source.json_array", "only"),
        (
            "[pipeline.source.multiline]\nstart_pattern = \"^x\"",
            "source.multiline",
            "applies only to format = \"lines\"",
        ),
        (
            "format = \"lines\"\n[pipeline.source.multiline]\nstart_pattern = \"(\"",
            "source.multiline.start_pattern",
            "not a regular expression",
        ),
        (
            "format = \"lines\"\n[pipeline.source.multiline]\nstart_pattern = \"^x\"\nmax_bytes = 99999999",
            "source.multiline.max_bytes",
            "1024 to max_record_bytes",
        ),
    ] {
        let msg = refusal(&with(source));
        assert!(msg.contains(&format!("pipeline \"clicks\".{field}")), "{source}: {msg}");
        assert!(msg.contains(needle), "{source}: {msg}");
    }
}

#[test]
fn redshift_refuses_formats_copy_cannot_read() {
    let redshift = |source: &str| {
        BASE.replace("bucket = \"stage\"", &format!("bucket = \"stage\"\n{source}"))
            .replace(
                "type = \"file\"\ndirectory = \"/tmp/out\"",
                "type = \"redshift\"\nurl = \"postgres://l@c:5439/dev\"\ntable = \"t\"\niam_role = \"arn:x\"",
            )
    };
    for ok in ["json_lines", "json_concat", "lines", "parquet", "orc"] {
        parse(&redshift(&format!("format = \"{ok}\""))).expect(ok);
    }
    for (format, advice) in [
        ("csv", "CSV IGNOREHEADER 1"),
        ("cloudtrail", "FORMAT JSON 'noshred'"),
        ("json_array", "FORMAT JSON 'noshred'"),
        ("alb", "REMOVEQUOTES"),
        ("elb", "REMOVEQUOTES"),
        ("vpc_flow", "IGNOREHEADER 1"),
        ("cloudfront", "IGNOREHEADER 2"),
        ("s3_access", "REMOVEQUOTES"),
    ] {
        let msg = refusal(&redshift(&format!("format = \"{format}\"")));
        assert!(msg.contains("pipeline \"clicks\".source.format"), "{msg}");
        assert!(msg.contains(&format!("format = \"{format}\"")), "{msg}");
        assert!(msg.contains(advice), "{format}: {msg}");
    }
    let msg = refusal(&redshift(
        "format = \"lines\"\n[pipeline.source.multiline]\nstart_pattern = \"^x\"",
    ));
    assert!(msg.contains("with multiline"), "{msg}");
}

#[test]
fn kms_keys_are_checked_where_they_are_set() {
    let msg = refusal(&BASE.replace(
        "name = \"clicks\"",
        "name = \"clicks\"\nkms_key_id = \"my key\"",
    ));
    assert!(
        msg.contains("pipeline \"clicks\".kms_key_id") && msg.contains("not a KMS key"),
        "{msg}"
    );
    let msg = refusal(&format!("[s3]\nkms_key_id = \"\"\n{BASE}"));
    assert!(msg.contains("s3.kms_key_id"), "{msg}");
    for key in [
        "1234abcd-12ab-34cd-56ef-1234567890ab",
        "mrk-1234abcd12ab34cd56ef1234567890ab",
        "alias/stageload",
        "arn:aws:kms:us-east-1:123456789012:alias/stageload",
    ] {
        let c = parse(&format!("[s3]\nkms_key_id = \"{key}\"\n{BASE}")).expect(key);
        assert_eq!(c.s3.kms_key_id.as_deref(), Some(key));
    }
}

#[test]
fn an_elastic_cloud_id_stands_for_the_endpoints() {
    use base64::Engine;
    let es = |dest: &str| {
        BASE.replace(
            "type = \"file\"\ndirectory = \"/tmp/out\"",
            &format!("type = \"elasticsearch\"\nindex = \"logs\"\n{dest}"),
        )
    };
    let id = format!(
        "prod:{}",
        base64::engine::general_purpose::STANDARD.encode("us-east-1.aws.found.io$abc123$def456")
    );
    let c = parse(&es(&format!("cloud_id = \"{id}\""))).expect("cloud_id alone");
    let DestinationConfig::Elasticsearch(e) = &c.pipelines[0].destination else {
        panic!("elasticsearch expected")
    };
    assert_eq!(e.urls(), vec!["https://abc123.us-east-1.aws.found.io/"]);
    let msg = refusal(&es(&format!(
        "cloud_id = \"{id}\"\nendpoints = [\"http://es:9200\"]"
    )));
    assert!(
        msg.contains("pipeline \"clicks\".destination.cloud_id") && msg.contains("not both"),
        "{msg}"
    );
    let msg = refusal(&es("cloud_id = \"prod:not base64!\""));
    assert!(msg.contains("not an Elastic Cloud ID"), "{msg}");
    let msg = refusal(&es(""));
    assert!(msg.contains("or set cloud_id"), "{msg}");
}

#[test]
fn sigv4_takes_its_scope_from_the_endpoint_and_refuses_other_credentials() {
    let es = |dest: &str| {
        BASE.replace(
            "type = \"file\"\ndirectory = \"/tmp/out\"",
            &format!("type = \"elasticsearch\"\nindex = \"logs\"\nauth = \"aws_sigv4\"\n{dest}"),
        )
    };
    let scope = |dest: &str| {
        let c = parse(&es(dest)).expect(dest);
        let DestinationConfig::Elasticsearch(e) = &c.pipelines[0].destination else {
            panic!("elasticsearch expected")
        };
        e.sigv4_scope()
    };
    assert_eq!(
        scope("endpoints = [\"https://search-logs-abc.eu-west-1.es.amazonaws.com\"]"),
        ("es".into(), Some("eu-west-1".into()))
    );
    assert_eq!(
        scope("endpoints = [\"https://x1y2.us-east-2.aoss.amazonaws.com:443/\"]"),
        ("aoss".into(), Some("us-east-2".into()))
    );
    assert_eq!(
        scope("endpoints = [\"http://127.0.0.1:9200\"]"),
        ("es".into(), None)
    );
    assert_eq!(
        scope("endpoints = [\"http://127.0.0.1:9200\"]\naws_service = \"aoss\"\naws_region = \"ap-south-1\""),
        ("aoss".into(), Some("ap-south-1".into()))
    );
    let msg = refusal(&es("endpoints = [\"http://es:9200\"]\nusername = \"u\""));
    assert!(
        msg.contains("destination.username") && msg.contains("aws_sigv4"),
        "{msg}"
    );
    let msg = refusal(&es(
        "endpoints = [\"http://es:9200\"]\naws_service = \"s3\"",
    ));
    assert!(msg.contains("destination.aws_service"), "{msg}");
    let plain = es("endpoints = [\"http://es:9200\"]\naws_region = \"eu-west-1\"")
        .replace("auth = \"aws_sigv4\"\n", "");
    assert!(refusal(&plain).contains("only read with auth"), "{plain}");
}

#[test]
fn hec_takes_url_or_urls_and_a_health_interval_in_range() {
    let hec = |dest: &str| {
        BASE.replace(
            "type = \"file\"\ndirectory = \"/tmp/out\"",
            &format!("type = \"splunk\"\ntoken = \"t\"\n{dest}"),
        )
    };
    let c = parse(&hec("urls = [\"https://a:8088\", \"https://b:8088/\"]")).expect("urls");
    let DestinationConfig::Splunk(s) = &c.pipelines[0].destination else {
        panic!("splunk expected")
    };
    assert_eq!(s.hec_urls(), vec!["https://a:8088", "https://b:8088/"]);
    assert!(refusal(&hec("")).contains("destination.url: is required (or urls)"));
    assert!(refusal(&hec("url = \"https://a\"\nurls = [\"https://b\"]")).contains("not both"));
    assert!(
        refusal(&hec("urls = [\"ftp://a\"]")).contains("destination.urls: must be an http(s) URL")
    );
    assert!(
        refusal(&hec("url = \"https://a\"\nhealth_check_interval_s = 0"))
            .contains("health_check_interval_s")
    );
}

#[test]
fn a_pipelines_role_and_region_are_checked_at_startup() {
    let with = |extra: &str| {
        BASE.replace(
            "[pipeline.source]\n",
            &format!("[pipeline.source]\n{extra}\n"),
        )
    };
    let c = parse(&with(
        "region = \"eu-west-1\"\nrole_arn = \"arn:aws:iam::123456789012:role/r\"\nexternal_id = \"acme-1\"",
    ))
    .expect("a role and a region");
    assert_eq!(c.pipelines[0].source.region.as_deref(), Some("eu-west-1"));
    assert!(refusal(&with("role_arn = \"logs-reader\"")).contains("source.role_arn"));
    assert!(refusal(&with("external_id = \"acme-1\"")).contains("only read with a role_arn"));
    assert!(refusal(&with(
        "role_arn = \"arn:aws:iam::123456789012:role/r\"\nsession_name = \"a b\""
    ))
    .contains("source.session_name"));
    assert!(refusal(&with("region = \"EU West\"")).contains("source.region"));
    let queue = "sqs_queue_url = \"https://sqs.eu-west-1.amazonaws.com/123456789012/q\"";
    let two = with(queue)
        + &with(&format!(
            "{queue}\nrole_arn = \"arn:aws:iam::123456789012:role/r\""
        ))
        .replace(
            "[control]\ndatabase_url = \"postgres://u:${PW}@h/db\"\n",
            "",
        )
        .replace("name = \"clicks\"", "name = \"views\"");
    assert!(
        refusal(&two).contains("sharing a queue"),
        "{}",
        refusal(&two)
    );
}

#[test]
fn index_templates_and_per_event_fields_are_checked() {
    let dest = |body: &str| {
        BASE.replace(
            "type = \"file\"\ndirectory = \"/tmp/out\"",
            &format!("endpoints = [\"http://es:9200\"]\ntype = \"elasticsearch\"\n{body}"),
        )
    };
    parse(&dest(
        "index = \"logs-{.service}-%Y.%m.%d\"\ndefault_index = \"logs-other\"",
    ))
    .expect("a template with its default");
    parse(&dest("index = \"logs-%Y.%m\"")).expect("time alone needs no default");
    for (body, field, words) in [
        (
            "index = \"logs-{.service}\"",
            "default_index",
            "is required",
        ),
        (
            "index = \"logs-{service}\"\ndefault_index = \"x\"",
            "index",
            "{.name}",
        ),
        ("index = \"Logs-%Y\"", "index", "lowercase"),
        (
            "index = \"logs-%Y\"\nindex_rotation = \"day\"",
            "index_rotation",
            "none",
        ),
        (
            "index = \"l-{.a}\"\ndefault_index = \"x\"\nmax_indices_per_batch = 0",
            "max_indices_per_batch",
            "1 to 10000",
        ),
    ] {
        let msg = refusal(&dest(body));
        assert!(
            msg.contains(&format!("pipeline \"clicks\".destination.{field}"))
                && msg.contains(words),
            "{body}: {msg}"
        );
    }
    let hec = |body: &str| {
        BASE.replace(
            "type = \"file\"\ndirectory = \"/tmp/out\"",
            &format!("type = \"splunk\"\nurl = \"http://h:8088\"\ntoken = \"t\"\n{body}"),
        )
    };
    parse(&hec("index_field = \"/team\"\nhost_field = \"/node\"")).expect("event fields");
    let msg = refusal(&hec("endpoint = \"raw\"\nindex_field = \"/team\""));
    assert!(
        msg.contains("destination.index_field") && msg.contains("raw"),
        "{msg}"
    );
    let msg = refusal(&hec("sourcetype_field = \"kind\""));
    assert!(
        msg.contains("destination.sourcetype_field") && msg.contains("JSON pointer"),
        "{msg}"
    );
}
