//! Running one intercepted Redshift COPY on the client's backend connection: resolve the table in
//! the client's transaction, find the S3 files, feed good rows to `COPY ... FROM STDIN`, record bad
//! ones in `stl_load_errors`, and answer the client as Redshift would.

use chrono::{NaiveDateTime, Utc};

use crate::catalog::{CommitRow, LoadErrorRow};
use crate::convert::{convert, ColType, Column, ConvertOpts};
use crate::copy_parse::{parse_copy, CopyStmt, Format, JsonMode};
use crate::jsonpath::PathSeg;
use crate::proxy::Session;
use crate::s3::{self, S3Error};
use crate::wire;

/// Flush good rows to the backend in chunks of about this size.
const CHUNK: usize = 64 * 1024;

/// One file to load.
struct Source {
    url: String,
    bucket: String,
    key: String,
    mandatory: bool,
}

/// What the table lookup found.
struct Target {
    cols: Vec<Column>,
    tbl: i32,
    userid: i32,
}

/// Why a started load stops.
enum Abort {
    /// Too many bad records: `Load into table ... failed`.
    Errors,
    /// Anything else that ends the COPY (missing mandatory file, S3, decompression).
    Fatal(String, i32),
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Redshift's load-failure message (SQLSTATE XX000).
pub fn load_failed(table: &str) -> String {
    format!("Load into table '{table}' failed.  Check 'stl_load_errors' system table for details.")
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
    let pid = s.pid.unwrap_or(0);
    // protocols.md 5.10: pg_last_copy_id() is "updated when COPY begins the load process ...
    // even if the COPY fails on bad data".
    if let Err(e) = s.shared.catalog.set_last_copy(pid, query, 0).await {
        tracing::warn!(error = %e, "could not record last copy");
    }
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
    let mut load = Load {
        st: &st,
        cols: &cols,
        target: &target,
        query,
        pid,
        started: Utc::now().naive_utc(),
        opts: opts(&st),
        errors: Vec::new(),
        commits: Vec::new(),
        loaded: 0,
        buf: Vec::with_capacity(CHUNK * 2),
    };
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
                let first = &load.errors[load.errors.len() - 1];
                let ctx = String::from_utf8_lossy(&first.raw_field_value).into_owned();
                (
                    load_failed(&st.table_name),
                    detail(&first.err_reason, first.err_code, &ctx, query),
                )
            }
            Abort::Fatal(m, code) => {
                let d = detail(&m, code, &st.from, query);
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
        return s.relay_error(f, out.ready).await;
    }
    s.send_backend(&wire::copy_done()).await?;
    let out = s.finish(None).await?;
    if let Some(e) = out.error {
        return s.relay_error(e, out.ready).await;
    }
    if let Err(e) = s
        .shared
        .catalog
        .set_last_copy(pid, query, load.loaded)
        .await
    {
        tracing::warn!(error = %e, "could not record last copy count");
    }
    tracing::info!(
        query,
        rows = load.loaded,
        errors = load.errors.len(),
        "copy done"
    );
    let mut msgs = Vec::new();
    if !load.errors.is_empty() {
        msgs.push(wire::info_notice(&format!(
            "Load into table '{}' completed, {} record(s) could not be loaded.  Check 'stl_load_errors' system table for details.",
            st.table_name,
            load.errors.len()
        )));
    }
    msgs.push(wire::info_notice(&format!(
        "Load into table '{}' completed, {} record(s) loaded successfully.",
        st.table_name, load.loaded
    )));
    // Redshift's CommandComplete tag for COPY carries no row count.
    msgs.push(wire::command_complete("COPY"));
    msgs.push(out.ready);
    s.send_client(&msgs).await
}

fn opts(st: &CopyStmt) -> ConvertOpts {
    ConvertOpts {
        empty_as_null: st.empty_as_null,
        blanks_as_null: st.blanks_as_null,
        truncate_columns: st.truncate_columns,
        accept_inv_chars: st.accept_inv_chars,
        trim_blanks: st.trim_blanks,
        date_format: st.date_format.clone(),
        time_format: st.time_format.clone(),
    }
}

/// Reads the table's columns inside the client's transaction (so a table created there is
/// visible); on failure the backend's error has already been relayed and `None` is returned.
async fn lookup(s: &mut Session, st: &CopyStmt) -> std::io::Result<Option<Target>> {
    let sql = format!(
        "SELECT a.attname::text, t.typname::text, a.atttypmod::text, a.attnotnull::text, \
         a.attrelid::int::text, (SELECT oid::int FROM pg_roles WHERE rolname = current_user)::text \
         FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
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
                not_null: get(r, 3) == "t",
            }
        })
        .collect();
    let first = out.rows.first();
    Ok(Some(Target {
        cols,
        tbl: first.map(|r| get(r, 4).parse().unwrap_or(0)).unwrap_or(0),
        userid: first.map(|r| get(r, 5).parse().unwrap_or(0)).unwrap_or(0),
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
            // protocols.md 1.3: "Load error 8001: COPY with MANIFEST requires the full path of an
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
        for (k, _) in keys {
            sources.push(Source {
                url: format!("s3://{bucket}/{k}"),
                bucket: bucket.clone(),
                key: k,
                mandatory: true,
            });
        }
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

struct Load<'a> {
    st: &'a CopyStmt,
    cols: &'a [Column],
    target: &'a Target,
    query: i32,
    pid: i32,
    started: NaiveDateTime,
    opts: ConvertOpts,
    errors: Vec<LoadErrorRow>,
    commits: Vec<CommitRow>,
    loaded: i64,
    buf: Vec<u8>,
}

impl Load<'_> {
    async fn files(
        &mut self,
        s: &mut Session,
        sources: &[Source],
        paths: Option<&[Vec<PathSeg>]>,
    ) -> std::io::Result<Option<Abort>> {
        let names: Vec<String> = self.cols.iter().map(|c| c.name.clone()).collect();
        let mut found = 0;
        for src in sources {
            let body = match s.shared.s3.get(&src.bucket, &src.key).await {
                Ok(b) => b,
                Err(S3Error::NoSuchKey) if !src.mandatory => continue,
                Err(e) => return Ok(Some(Abort::Fatal(format!("{e} ({})", src.url), 1212))),
            };
            found += 1;
            let data = match s3::decompress(body, self.st.compression) {
                Ok(d) => d,
                Err(m) => return Ok(Some(Abort::Fatal(format!("{m} ({})", src.url), 1216))),
            };
            let recs = crate::formats::records(&data, self.st, &names, paths);
            let before = self.errors.len();
            for r in &recs {
                if let Err(e) = self.record(src, r) {
                    self.errors.push(*e);
                    // MAXERROR n: up to n bad records are skipped; one more fails the COPY.
                    // (protocols.md 5.7 words it as "error_count or more", which would make the
                    // default 0 fail every load; Redshift behaves as "more than n".)
                    if self.errors.len() as u64 > self.st.max_error {
                        return Ok(Some(Abort::Errors));
                    }
                }
                if self.buf.len() >= CHUNK {
                    s.send_backend(&wire::copy_data(&self.buf)).await?;
                    self.buf.clear();
                }
            }
            self.commits.push(CommitRow {
                userid: self.target.userid,
                query: self.query,
                filename: src.url.clone(),
                lines_scanned: recs.len() as i32,
                errors: (self.errors.len() - before) as i32,
                file_format: if matches!(self.st.format, Format::Json(_)) {
                    "JSON"
                } else {
                    "Text"
                }
                .into(),
            });
        }
        if found == 0 {
            // protocols.md 1.3: "Regardless of mandatory, COPY terminates if no files are found."
            return Ok(Some(Abort::Fatal(
                "Manifest file has no files that exist".into(),
                1212,
            )));
        }
        if !self.buf.is_empty() {
            s.send_backend(&wire::copy_data(&self.buf)).await?;
            self.buf.clear();
        }
        Ok(None)
    }

    /// Converts one record into a CSV line in `buf`, or describes why it is bad.
    fn record(
        &mut self,
        src: &Source,
        r: &crate::formats::Record<'_>,
    ) -> Result<(), Box<LoadErrorRow>> {
        let row = |colname: &str,
                   col: Option<&Column>,
                   position: i32,
                   raw_field: &[u8],
                   code: i32,
                   reason: &str| {
            Box::new(LoadErrorRow {
                userid: self.target.userid,
                tbl: self.target.tbl,
                starttime: self.started,
                session: self.pid,
                query: self.query,
                filename: src.url.clone(),
                line_number: r.line,
                colname: colname.to_string(),
                type_: col.map(|c| c.typname.clone()).unwrap_or_default(),
                col_length: col.map(|c| c.ty.col_length()).unwrap_or_default(),
                position,
                raw_line: r.raw.to_vec(),
                raw_field_value: raw_field.to_vec(),
                err_code: code,
                err_reason: reason.to_string(),
            })
        };
        let fields = match &r.fields {
            Ok(f) => f,
            Err(e) => {
                let col = self.cols.iter().find(|c| c.name == e.colname);
                return Err(row(&e.colname, col, 0, &e.raw_field, e.code, &e.reason));
            }
        };
        let mut line = Vec::new();
        for (i, (col, raw)) in self.cols.iter().zip(fields).enumerate() {
            match convert(col, raw.as_deref(), &self.opts) {
                Ok(v) => {
                    if i > 0 {
                        line.push(b',');
                    }
                    if let Some(v) = v {
                        line.push(b'"');
                        line.extend_from_slice(v.replace('"', "\"\"").as_bytes());
                        line.push(b'"');
                    }
                }
                Err(e) => {
                    let rf = raw.as_deref().unwrap_or_default();
                    return Err(row(&col.name, Some(col), e.position, rf, e.code, &e.reason));
                }
            }
        }
        line.push(b'\n');
        self.buf.extend_from_slice(&line);
        self.loaded += 1;
        Ok(())
    }
}
