//! The side connection (`--admin-url`): creates the Redshift-like system objects at startup
//! (`stl_load_errors`, `stl_load_commits`, `sys_load_error_detail`, `pg_last_copy_id()`,
//! `pg_last_copy_count()`), hands out
//! query ids and writes load errors outside the client's transaction so they survive a rollback.

use chrono::NaiveDateTime;
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

/// Serialises concurrent `init` calls of several emulators sharing one database.
const INIT_LOCK: i64 = 0x7265_6473_6869;

const DDL: &str = r#"
CREATE TABLE IF NOT EXISTS public.stl_load_errors (
    userid integer, slice integer, tbl integer, starttime timestamp, session integer,
    query integer, filename character(256), line_number bigint, colname character(127),
    type character(10), col_length character(10), position integer,
    raw_line character(1024), raw_field_value character(1024), err_code integer,
    err_reason character(100), is_partial integer, start_offset bigint);
CREATE TABLE IF NOT EXISTS public.stl_load_commits (
    userid integer, query integer, slice integer, name character(256), filename character(256),
    byte_offset integer, lines_scanned integer, errors integer, curtime timestamp,
    status integer, file_format character(16), is_partial integer, start_offset bigint,
    copy_job_id bigint);
CREATE SEQUENCE IF NOT EXISTS public.redshift_emu_query_id;
CREATE TABLE IF NOT EXISTS public.redshift_emu_last_copy (
    pid integer PRIMARY KEY, query integer NOT NULL, count bigint NOT NULL);
CREATE OR REPLACE FUNCTION public.pg_last_copy_id() RETURNS integer LANGUAGE sql VOLATILE AS
    $f$ SELECT coalesce((SELECT query FROM public.redshift_emu_last_copy WHERE pid = pg_backend_pid()), -1) $f$;
CREATE OR REPLACE FUNCTION public.pg_last_copy_count() RETURNS bigint LANGUAGE sql VOLATILE AS
    $f$ SELECT coalesce((SELECT count FROM public.redshift_emu_last_copy WHERE pid = pg_backend_pid()), 0) $f$;
-- protocols.md 5.14: the SYS view Redshift Serverless has instead of stl_load_errors; its
-- query_id is the query pg_last_copy_id() returns.
CREATE OR REPLACE VIEW public.sys_load_error_detail AS SELECT
    userid AS user_id, query::bigint AS query_id, 0::bigint AS transaction_id,
    session AS session_id, current_database()::character(64) AS database_name, tbl AS table_id,
    starttime AS start_time, filename AS file_name, line_number, colname AS column_name,
    type AS column_type, col_length AS column_length, position, err_code AS error_code,
    err_reason::character(512) AS error_message
    FROM public.stl_load_errors;
GRANT SELECT ON public.stl_load_errors, public.stl_load_commits, public.redshift_emu_last_copy,
    public.sys_load_error_detail TO PUBLIC;
"#;

/// One `stl_load_errors` row (protocols.md 5.11).
#[derive(Debug, Clone)]
pub struct LoadErrorRow {
    /// userid.
    pub userid: i32,
    /// tbl (the table's oid).
    pub tbl: i32,
    /// starttime (UTC).
    pub starttime: NaiveDateTime,
    /// session (backend pid).
    pub session: i32,
    /// query id.
    pub query: i32,
    /// filename (full s3:// URL).
    pub filename: String,
    /// line_number.
    pub line_number: i64,
    /// colname.
    pub colname: String,
    /// type.
    pub type_: String,
    /// col_length.
    pub col_length: String,
    /// position.
    pub position: i32,
    /// raw_line (bytes as read).
    pub raw_line: Vec<u8>,
    /// raw_field_value (bytes as read).
    pub raw_field_value: Vec<u8>,
    /// err_code.
    pub err_code: i32,
    /// err_reason.
    pub err_reason: String,
}

/// One `stl_load_commits` row (protocols.md 5.13).
#[derive(Debug, Clone)]
pub struct CommitRow {
    /// userid.
    pub userid: i32,
    /// query id.
    pub query: i32,
    /// filename.
    pub filename: String,
    /// lines_scanned.
    pub lines_scanned: i32,
    /// errors.
    pub errors: i32,
    /// file_format: Text or JSON.
    pub file_format: String,
}

/// The side connection, reconnected when it drops.
pub struct Catalog {
    url: String,
    client: Mutex<Client>,
}

async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %e, "side connection closed");
        }
    });
    Ok(client)
}

/// Cuts to `max` characters, replacing what PostgreSQL cannot store (NUL) and, for raw_line,
/// multibyte characters by '.' ("multibyte chars replaced by `.`", protocols.md 5.11).
pub fn clip(b: &[u8], max: usize, dot_multibyte: bool) -> String {
    String::from_utf8_lossy(b)
        .chars()
        .map(|c| {
            if c == '\0' || (dot_multibyte && !c.is_ascii()) {
                '.'
            } else {
                c
            }
        })
        .take(max)
        .collect()
}

fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

impl Catalog {
    /// Connects and creates the system objects.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let mut client = connect(url).await?;
        let tx = client.transaction().await?;
        tx.query("SELECT pg_advisory_xact_lock($1)", &[&INIT_LOCK])
            .await?;
        tx.batch_execute(DDL).await?;
        tx.commit().await?;
        Ok(Self {
            url: url.to_string(),
            client: Mutex::new(client),
        })
    }

    async fn client(&self) -> Result<tokio::sync::MutexGuard<'_, Client>, tokio_postgres::Error> {
        let mut g = self.client.lock().await;
        if g.is_closed() {
            *g = connect(&self.url).await?;
        }
        Ok(g)
    }

    /// Next query id; sequences ignore rollbacks, like Redshift's query ids.
    pub async fn next_query_id(&self) -> Result<i32, tokio_postgres::Error> {
        let c = self.client().await?;
        let row = c
            .query_one("SELECT nextval('public.redshift_emu_query_id')::int", &[])
            .await?;
        Ok(row.get(0))
    }

    /// Records the session's last COPY for `pg_last_copy_id()` / `pg_last_copy_count()`.
    pub async fn set_last_copy(
        &self,
        pid: i32,
        query: i32,
        count: i64,
    ) -> Result<(), tokio_postgres::Error> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO public.redshift_emu_last_copy (pid, query, count) VALUES ($1, $2, $3) \
             ON CONFLICT (pid) DO UPDATE SET query = excluded.query, count = excluded.count",
            &[&pid, &query, &count],
        )
        .await?;
        Ok(())
    }

    /// Evaluates a volatile column default (a sequence) `n` times, outside the client's
    /// transaction; sequences are not transactional, so the values are what the backend would
    /// have drawn.
    pub async fn eval_many(
        &self,
        expr: &str,
        n: i64,
    ) -> Result<Vec<Option<String>>, tokio_postgres::Error> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!("SELECT ({expr})::text FROM generate_series(1, $1::bigint)"),
                &[&n],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Forgets a session (its backend pid may be reused).
    pub async fn clear_session(&self, pid: i32) -> Result<(), tokio_postgres::Error> {
        let c = self.client().await?;
        c.execute(
            "DELETE FROM public.redshift_emu_last_copy WHERE pid = $1",
            &[&pid],
        )
        .await?;
        Ok(())
    }

    /// Writes load errors and per-file commit rows in one transaction of the side connection.
    pub async fn record(
        &self,
        errors: &[LoadErrorRow],
        commits: &[CommitRow],
    ) -> Result<(), tokio_postgres::Error> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let ins = tx
            .prepare(
                "INSERT INTO public.stl_load_errors (userid, slice, tbl, starttime, session, query, \
                 filename, line_number, colname, type, col_length, position, raw_line, raw_field_value, \
                 err_code, err_reason, is_partial, start_offset) \
                 VALUES ($1, 0, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 0, 0)",
            )
            .await?;
        for e in errors {
            tx.execute(
                &ins,
                &[
                    &e.userid,
                    &e.tbl,
                    &e.starttime,
                    &e.session,
                    &e.query,
                    &cut(&e.filename, 256),
                    &e.line_number,
                    &cut(&e.colname, 127),
                    &cut(&e.type_, 10),
                    &cut(&e.col_length, 10),
                    &e.position,
                    &clip(&e.raw_line, 1024, true),
                    &clip(&e.raw_field_value, 1024, false),
                    &e.err_code,
                    &cut(&e.err_reason, 100),
                ],
            )
            .await?;
        }
        let ins = tx
            .prepare(
                "INSERT INTO public.stl_load_commits (userid, query, slice, name, filename, byte_offset, \
                 lines_scanned, errors, curtime, status, file_format, is_partial, start_offset, copy_job_id) \
                 VALUES ($1, $2, 0, '', $3, 0, $4, $5, (now() AT TIME ZONE 'UTC'), 0, $6, 0, 0, 0)",
            )
            .await?;
        for r in commits {
            tx.execute(
                &ins,
                &[
                    &r.userid,
                    &r.query,
                    &cut(&r.filename, 256),
                    &r.lines_scanned,
                    &r.errors,
                    &r.file_format,
                ],
            )
            .await?;
        }
        tx.commit().await
    }
}

#[cfg(test)]
mod tests {
    use super::clip;

    #[test]
    fn clips_raw_lines() {
        assert_eq!(clip("aé\0b".as_bytes(), 10, true), "a..b");
        assert_eq!(clip("aéb".as_bytes(), 2, false), "aé");
        assert_eq!(clip(&[b'x'; 2000], 1024, true).len(), 1024);
    }
}
