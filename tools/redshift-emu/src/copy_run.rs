//! Running one intercepted Redshift COPY on the client's backend connection: resolve the table in
//! the client's transaction, find the S3 files, feed good rows to `COPY ... FROM STDIN`, record bad
//! ones in `stl_load_errors`, and answer the client as Redshift would.

use chrono::{NaiveDateTime, Utc};

use crate::convert::{ColType, Column, ConvertOpts};
use crate::copy_parse::{parse_copy, CopyStmt, Format, JsonMode};
use crate::jsonpath::PathSeg;
use crate::load::{DefaultVal, Load};
use crate::proxy::Session;
use crate::s3;
use crate::wire;

/// One file to load.
pub struct Source {
    /// `s3://bucket/key`.
    pub url: String,
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// A missing mandatory file fails the COPY.
    pub mandatory: bool,
}

/// What the table lookup found.
pub struct Target {
    /// All columns, in table order.
    pub cols: Vec<Column>,
    /// Table oid.
    pub tbl: i32,
    /// Current user's oid.
    pub userid: i32,
    /// The COPY's start time in UTC, from the backend's clock (so never before a `getdate()`
    /// the session took earlier).
    pub started: NaiveDateTime,
}

/// The ids one load writes into its system rows.
pub struct Ids {
    /// Query id (`pg_last_copy_id()`, `stl_load_errors.query`).
    pub query: i32,
    /// `sys_load_error_detail.query_id` when it is not `query` (Serverless).
    pub sys_query: Option<i64>,
    /// Session (backend pid).
    pub pid: i32,
}

/// Why a started load stops.
pub enum Abort {
    /// Too many bad records: `Load into table ... failed`.
    Errors,
    /// Anything else that ends the COPY (missing mandatory file, S3, decompression).
    Fatal(String, i32),
    /// A columnar file failed: `Spectrum Scan Error`, with the DETAIL's code and context.
    Scan(crate::columnar::ScanError),
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The system relation a client is told to check for load errors.
pub fn errors_relation(serverless: bool) -> &'static str {
    if serverless {
        "sys_load_error_detail"
    } else {
        "stl_load_errors"
    }
}

/// Redshift's load-failure message (SQLSTATE XX000).
pub fn load_failed(table: &str, serverless: bool) -> String {
    format!(
        "Load into table '{table}' failed.  Check '{}' system table for details.",
        errors_relation(serverless)
    )
}

/// Records the COPY as the session's last one (`pg_last_copy_id()`, `pg_last_copy_count()`) on the
/// client's backend, unless its transaction has already failed; returns the ReadyForQuery to relay.
/// https://docs.aws.amazon.com/redshift/latest/dg/PG_LAST_COPY_ID.html: "If the COPY transaction
/// is rolled back, the COPY ID is not updated". The values are session settings, so a ROLLBACK
/// of the block that ran the COPY restores the earlier ones.
async fn remember(
    s: &mut Session,
    ready: wire::Message,
    query: i32,
    count: i64,
) -> std::io::Result<wire::Message> {
    if !matches!(ready.body.first(), Some(b'I' | b'T')) {
        return Ok(ready);
    }
    let out = s
        .backend_query(&format!(
            "SELECT set_config('redshift_emu.last_copy_id', '{query}', false), \
             set_config('redshift_emu.last_copy_count', '{count}', false)"
        ))
        .await?;
    if let Some(e) = out.error {
        tracing::warn!(error = ?e, "could not record last copy");
    }
    Ok(out.ready)
}

/// The DETAIL block Redshift attaches to COPY errors.
fn detail(error: &str, code: i32, context: &str, query: i32) -> String {
    let line = "-----------------------------------------------";
    format!(
        "\n  {line}\n  error:  {error}\n  code:      {code}\n  context:   {context}\n  query:     {query}\n  location:  redshift-emu\n  process:   redshift-emu\n  {line}\n"
    )
}

/// Runs the COPY in `sql` and writes the whole answer (ending in ReadyForQuery) to the client.
pub async fn run(s: &mut Session, sql: &str) -> std::io::Result<()> {
    let st = match parse_copy(sql) {
        Ok(st) => st,
        Err(e) => return s.fail(e.sqlstate, &e.message, None, e.position).await,
    };
    tracing::info!(table = %st.table, from = %st.from, pid = ?s.pid, "copy");
    let Some(target) = lookup(s, &st).await? else {
        return Ok(());
    };
    let cols = match select_columns(&st, &target.cols) {
        Ok(c) => c,
        Err(m) => return s.fail("42703", &m, None, None).await,
    };
    let pid = s.pid.unwrap_or(0);
    match s
        .shared
        .catalog
        .take_fault("copy_1023", &st.table, &st.table_name)
        .await
    {
        Ok(Some(xid)) => {
            // https://docs.aws.amazon.com/redshift/latest/dg/c_serial_isolation-serializable-isolation-troubleshooting.html
            let d = format!(
                "Serializable isolation violation on table - {}, transactions forming the cycle are: {}, {xid} (pid:{pid})",
                target.tbl,
                xid - 1
            );
            tracing::info!(table = %st.table, pid, "copy answered with armed fault 1023");
            return s.fail("XX000", "1023", Some(&d), None).await;
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "could not read redshift_emu_faults"),
    }
    // A COPY stuck outside the database (a slow S3 read): the backend's statement_timeout
    // cannot fire, so only pg_terminate_backend frees its locks before the sleep ends.
    if let Ok(Some(_)) = s
        .shared
        .catalog
        .take_fault("copy_hang", &st.table, &st.table_name)
        .await
    {
        tracing::info!(table = %st.table, pid, "copy answered with armed fault copy_hang: sleeping 60s");
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    }
    let (sources, paths) = match plan(s, &st, cols.len()).await {
        Ok(x) => x,
        Err((msg, code)) => {
            let d = detail(&msg, code, &st.from, 0);
            return s.fail("XX000", &msg, Some(&d), None).await;
        }
    };
    let query = match s.shared.catalog.next_query_id().await {
        Ok(q) => q,
        Err(e) => {
            return s
                .fail("XX000", &format!("redshift-emu: {e}"), None, None)
                .await
        }
    };
    let sys_query = if s.shared.serverless {
        match s.shared.catalog.next_sys_query_id().await {
            Ok(q) => Some(q),
            Err(e) => {
                return s
                    .fail("XX000", &format!("redshift-emu: {e}"), None, None)
                    .await
            }
        }
    } else {
        None
    };
    let ids = Ids {
        query,
        sys_query,
        pid,
    };
    let Some(defaults) = defaults(s, &st, &cols).await? else {
        return Ok(());
    };
    let names: Vec<String> = cols.iter().map(|c| quote_ident(&c.name)).collect();
    let copy = format!(
        "COPY {} ({}) FROM STDIN WITH (FORMAT csv)",
        st.table,
        names.join(", ")
    );
    s.send_backend(&wire::query(&copy)).await?;
    let m = s.recv_backend().await?;
    if m.tag != b'G' {
        let err = (m.tag == b'E').then(|| wire::Fields::parse(&m.body));
        let out = s.finish(err).await?;
        let f = out
            .error
            .unwrap_or_else(|| wire::error_fields("XX000", "copy did not start", None));
        return s.relay_error(f, out.ready).await;
    }
    let mut load = Load::new(&st, &cols, &target, ids, opts(&st), defaults);
    let abort = load.files(s, &sources, paths.as_deref()).await?;
    if let Err(e) = s.shared.catalog.record(&load.errors, &load.commits).await {
        tracing::error!(error = %e, query, "could not write stl_load_errors");
    }
    if let Some(abort) = abort {
        s.send_backend(&wire::copy_fail("redshift-emu: load aborted"))
            .await?;
        let out = s.finish(None).await?;
        let (msg, d) = match abort {
            Abort::Errors => {
                let last = &load.errors[load.errors.len() - 1];
                let ctx = String::from_utf8_lossy(&last.raw_field_value).into_owned();
                (
                    load_failed(&st.table_name, s.shared.serverless),
                    detail(&last.err_reason, last.err_code, &ctx, query),
                )
            }
            Abort::Fatal(m, code) => {
                let d = detail(&m, code, &st.from, query);
                (m, d)
            }
            Abort::Scan(e) => {
                // The `scan_unnamed` fault: an error that does not say which file failed.
                let unnamed = matches!(
                    s.shared
                        .catalog
                        .take_fault("scan_unnamed", &st.table, &st.table_name)
                        .await,
                    Ok(Some(_))
                );
                let context = if unnamed {
                    "Error while reading a columnar file of the COPY".to_string()
                } else {
                    e.context
                };
                let m = "Spectrum Scan Error".to_string();
                let d = detail(&m, e.code, &context, query);
                (m, d)
            }
        };
        tracing::info!(query, errors = load.errors.len(), "copy failed");
        let mut f = wire::error_fields("XX000", &msg, Some(&d));
        if let Some(e) = out.error {
            // Keep the backend's severity fields; the text is Redshift's.
            f.0.retain(|(c, _)| *c != b'S' && *c != b'V');
            f.0.splice(
                0..0,
                e.0.into_iter().filter(|(c, _)| *c == b'S' || *c == b'V'),
            );
        }
        // The load had begun: outside a transaction block the failed COPY is the session's
        // last one ("If the COPY fails because of invalid load data, the COPY ID is updated").
        let ready = remember(s, out.ready, query, 0).await?;
        return s.relay_error(f, ready).await;
    }
    s.send_backend(&wire::copy_done()).await?;
    let out = s.finish(None).await?;
    if let Some(e) = out.error {
        let ready = remember(s, out.ready, query, 0).await?;
        return s.relay_error(e, ready).await;
    }
    let ready = remember(s, out.ready, query, load.loaded).await?;
    tracing::info!(
        query,
        rows = load.loaded,
        errors = load.errors.len(),
        "copy done"
    );
    let mut msgs = Vec::new();
    if !load.errors.is_empty() {
        msgs.push(wire::info_notice(&format!(
            "Load into table '{}' completed, {} record(s) could not be loaded.  Check '{}' system table for details.",
            st.table_name,
            load.errors.len(),
            errors_relation(s.shared.serverless)
        )));
    }
    msgs.push(wire::info_notice(&format!(
        "Load into table '{}' completed, {} record(s) loaded successfully.",
        st.table_name, load.loaded
    )));
    // Redshift's CommandComplete tag for COPY carries no row count.
    msgs.push(wire::command_complete("COPY"));
    msgs.push(ready);
    s.send_client(&msgs).await
}

/// Column defaults for JSON records that lack a key: constant ones are evaluated once here, in
/// the client's transaction; sequence-drawing ones per row later. `None` when the evaluation
/// failed (the error has been relayed).
async fn defaults(
    s: &mut Session,
    st: &CopyStmt,
    cols: &[Column],
) -> std::io::Result<Option<Vec<DefaultVal>>> {
    let mut out: Vec<DefaultVal> = cols
        .iter()
        .map(|c| match &c.default {
            Some(e) if matches!(st.format, Format::Json(_)) && e.contains("nextval(") => {
                DefaultVal::PerRow(e.clone())
            }
            Some(_) if matches!(st.format, Format::Json(_)) => DefaultVal::Const(None),
            _ => DefaultVal::None,
        })
        .collect();
    let exprs: Vec<(usize, String)> = cols
        .iter()
        .enumerate()
        .filter(|(i, _)| matches!(out[*i], DefaultVal::Const(_)))
        .map(|(i, c)| {
            (
                i,
                format!("({})::text", c.default.clone().unwrap_or_default()),
            )
        })
        .collect();
    if exprs.is_empty() {
        return Ok(Some(out));
    }
    let sql = format!(
        "SELECT {}",
        exprs
            .iter()
            .map(|(_, e)| e.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let res = s.backend_query(&sql).await?;
    if let Some(e) = res.error {
        s.relay_error(e, res.ready).await?;
        return Ok(None);
    }
    let row = res.rows.into_iter().next().unwrap_or_default();
    for (k, (i, _)) in exprs.iter().enumerate() {
        out[*i] = DefaultVal::Const(row.get(k).cloned().flatten());
    }
    Ok(Some(out))
}

fn opts(st: &CopyStmt) -> ConvertOpts {
    // Parquet values arrive typed and are written out in ISO form, whatever TIMEFORMAT says.
    let columnar = st.format.columnar().is_some();
    let auto = |spec: &crate::copy_parse::TimeSpec| {
        if columnar {
            crate::copy_parse::TimeSpec::Auto
        } else {
            spec.clone()
        }
    };
    ConvertOpts {
        empty_as_null: st.empty_as_null,
        blanks_as_null: st.blanks_as_null,
        truncate_columns: st.truncate_columns,
        accept_inv_chars: st.accept_inv_chars,
        trim_blanks: st.trim_blanks,
        date_format: auto(&st.date_format),
        time_format: auto(&st.time_format),
    }
}

/// Reads the table's columns inside the client's transaction (so a table created there is
/// visible); on failure the backend's error has already been relayed and `None` is returned.
async fn lookup(s: &mut Session, st: &CopyStmt) -> std::io::Result<Option<Target>> {
    let sql = format!(
        "SELECT a.attname::text, t.typname::text, a.atttypmod::text, a.attnotnull::text, \
         a.attrelid::int::text, (SELECT oid::int FROM pg_roles WHERE rolname = current_user)::text, \
         pg_get_expr(d.adbin, d.adrelid), \
         to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') \
         FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
         WHERE a.attrelid = {}::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        quote_literal(&st.table)
    );
    let out = s.backend_query(&sql).await?;
    if let Some(e) = out.error {
        s.relay_error(e, out.ready).await?;
        return Ok(None);
    }
    let get = |r: &Vec<Option<String>>, i: usize| r.get(i).cloned().flatten().unwrap_or_default();
    let cols = out
        .rows
        .iter()
        .map(|r| {
            let typname = get(r, 1);
            Column {
                name: get(r, 0),
                ty: ColType::from_pg(&typname, get(r, 2).parse().unwrap_or(-1)),
                typname,
                not_null: matches!(get(r, 3).as_str(), "t" | "true"),
                default: r.get(6).cloned().flatten(),
            }
        })
        .collect();
    let first = out.rows.first();
    Ok(Some(Target {
        cols,
        tbl: first.map(|r| get(r, 4).parse().unwrap_or(0)).unwrap_or(0),
        userid: first.map(|r| get(r, 5).parse().unwrap_or(0)).unwrap_or(0),
        started: first
            .and_then(|r| NaiveDateTime::parse_from_str(&get(r, 7), "%Y-%m-%d %H:%M:%S%.f").ok())
            .unwrap_or_else(|| Utc::now().naive_utc()),
    }))
}

fn select_columns(st: &CopyStmt, all: &[Column]) -> Result<Vec<Column>, String> {
    let Some(list) = &st.columns else {
        return Ok(all.to_vec());
    };
    list.iter()
        .map(|n| {
            all.iter().find(|c| &c.name == n).cloned().ok_or_else(|| {
                format!(
                    "column \"{n}\" of relation \"{}\" does not exist",
                    st.table_name
                )
            })
        })
        .collect()
}

/// Finds the files to load and the JSONPaths, before anything is loaded.
async fn plan(
    s: &mut Session,
    st: &CopyStmt,
    ncols: usize,
) -> Result<(Vec<Source>, Option<Vec<Vec<PathSeg>>>), (String, i32)> {
    let s3c = s.shared.s3.clone();
    let (bucket, key) =
        s3::split_url(&st.from).ok_or_else(|| (format!("Invalid S3 URL '{}'", st.from), 8001))?;
    let mut sources = Vec::new();
    if st.manifest {
        let body = s3c
            .get(&bucket, &key)
            .await
            .map_err(|e| (format!("Problem reading manifest file - {e}"), 8001))?;
        for e in s3::parse_manifest(&body).map_err(|m| (m, 8001))? {
            // Columnar COPY reads the files through Spectrum, which needs each file's size:
            // "error: File entry does not have 'meta' key. code: 15003" otherwise.
            if st.format.columnar().is_some() {
                if !e.meta {
                    return Err(("File entry does not have 'meta' key.".into(), 15003));
                }
                if e.content_length.is_none() {
                    return Err((
                        "File entry does not have 'content_length' key in 'meta'.".into(),
                        15003,
                    ));
                }
            }
            // https://docs.aws.amazon.com/redshift/latest/dg/loading-data-files-using-manifest.html: "Load error 8001: COPY with MANIFEST requires the full path of an
            // S3 object".
            match s3::split_url(&e.url) {
                Some((b, k)) if !k.is_empty() && !k.ends_with('/') => sources.push(Source {
                    url: e.url.clone(),
                    bucket: b,
                    key: k,
                    mandatory: e.mandatory,
                }),
                _ => {
                    return Err((
                        format!(
                            "COPY with MANIFEST requires the full path of an S3 object: '{}'",
                            e.url
                        ),
                        8001,
                    ))
                }
            }
        }
    } else {
        let keys = s3c
            .list(&bucket, &key)
            .await
            .map_err(|e| (e.to_string(), 1212))?;
        if keys.is_empty() {
            return Err((
                format!("The specified S3 prefix '{key}' does not exist"),
                1212,
            ));
        }
        // Zero-byte "folder" placeholders are not data files.
        for (k, _) in keys
            .into_iter()
            .filter(|(k, size)| !(k.ends_with('/') && *size == 0))
        {
            sources.push(Source {
                url: format!("s3://{bucket}/{k}"),
                bucket: bucket.clone(),
                key: k,
                mandatory: true,
            });
        }
    }
    if st.format == Format::Orc {
        return Err((
            "the emulator does not read ORC (FORMAT AS ORC): use Parquet against the emulator"
                .into(),
            15001,
        ));
    }
    if st.format == Format::Json(JsonMode::Noshred) && ncols != 1 {
        return Err((
            format!(
                "JSON 'noshred' loads each document into a single SUPER column; the table or column list has {ncols} columns"
            ),
            8001,
        ));
    }
    let mut paths = None;
    if let Format::Json(JsonMode::Paths(url)) = &st.format {
        let (b, k) = s3::split_url(url).ok_or_else(|| (format!("Invalid S3 URL '{url}'"), 8001))?;
        let body = s3c
            .get(&b, &k)
            .await
            .map_err(|e| (format!("Problem reading JSONPath file - {e}"), 8001))?;
        let text = String::from_utf8_lossy(&body);
        paths = crate::jsonpath::parse_file(&text).map_err(|m| (m, 8001))?;
        if let Some(p) = &paths {
            if p.len() != ncols {
                return Err((
                    format!(
                        "Number of jsonpaths and the number of columns should match. JSONPath size: {}, Number of columns in table or column list: {ncols}",
                        p.len()
                    ),
                    8001,
                ));
            }
        }
    }
    Ok((sources, paths))
}
