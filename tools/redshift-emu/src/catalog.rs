//! The side connection (`--admin-url`): creates the Redshift-like system objects at startup
//! (`stl_load_errors`, `stl_load_commits`, `sys_load_error_detail`, `svv_redshift_databases`,
//! `pg_last_copy_id()`, `pg_last_copy_count()`, `getdate()`, the fault table), hands out query
//! ids, consumes armed faults and writes load errors outside the client's transaction so they
//! survive a rollback.

use chrono::NaiveDateTime;
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

/// Serialises concurrent `init` calls of several emulators sharing one database.
const INIT_LOCK: i64 = 0x7265_6473_6869;

const DDL: &str = r#"
-- Earlier versions kept the rows in tables named like the views; move them aside.
DO $m$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'public' AND c.relname = 'stl_load_errors' AND c.relkind = 'r') THEN
        DROP VIEW IF EXISTS public.sys_load_error_detail;
        ALTER TABLE public.stl_load_errors RENAME TO redshift_emu_load_errors;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'public' AND c.relname = 'stl_load_commits' AND c.relkind = 'r') THEN
        ALTER TABLE public.stl_load_commits RENAME TO redshift_emu_load_commits;
    END IF;
END $m$;
DROP TABLE IF EXISTS public.redshift_emu_last_copy;
-- Redshift's SUPER, for JSON 'noshred': a jsonb domain, so documents are checked and queryable.
DO $s$ BEGIN
    CREATE DOMAIN public.super AS jsonb;
EXCEPTION WHEN duplicate_object THEN NULL;
END $s$;
CREATE EXTENSION IF NOT EXISTS dblink;
CREATE TABLE IF NOT EXISTS public.redshift_emu_load_errors (
    userid integer, slice integer, tbl integer, starttime timestamp, session integer,
    query integer, filename character(256), line_number bigint, colname character(127),
    type character(10), col_length character(10), position integer,
    raw_line character(1024), raw_field_value character(1024), err_code integer,
    err_reason character(100), is_partial integer, start_offset bigint);
ALTER TABLE public.redshift_emu_load_errors ADD COLUMN IF NOT EXISTS sys_query_id bigint;
CREATE TABLE IF NOT EXISTS public.redshift_emu_load_commits (
    userid integer, query integer, slice integer, name character(256), filename character(256),
    byte_offset integer, lines_scanned integer, errors integer, curtime timestamp,
    status integer, file_format character(16), is_partial integer, start_offset bigint,
    copy_job_id bigint);
CREATE SEQUENCE IF NOT EXISTS public.redshift_emu_query_id;
-- Serverless query ids in SYS views: a separate id space, far from pg_last_copy_id()'s.
CREATE SEQUENCE IF NOT EXISTS public.redshift_emu_sys_query_id START WITH 1000000001;
CREATE TABLE IF NOT EXISTS public.redshift_emu_faults (
    fault text NOT NULL, remaining integer NOT NULL, target text);
-- The DSN the views' dblink uses; holds the admin password, so only its owner reads it.
CREATE TABLE IF NOT EXISTS public.redshift_emu_config (key text PRIMARY KEY, value text NOT NULL);
REVOKE ALL ON public.redshift_emu_config FROM PUBLIC;
-- Session values, not rows: a rolled-back SET reverts, as Redshift's COPY id does on rollback.
CREATE OR REPLACE FUNCTION public.pg_last_copy_id() RETURNS integer LANGUAGE sql STABLE AS
    $f$ SELECT coalesce(nullif(current_setting('redshift_emu.last_copy_id', true), '')::integer, -1) $f$;
CREATE OR REPLACE FUNCTION public.pg_last_copy_count() RETURNS bigint LANGUAGE sql STABLE AS
    $f$ SELECT coalesce(nullif(current_setting('redshift_emu.last_copy_count', true), '')::bigint, 0) $f$;
CREATE OR REPLACE FUNCTION public.getdate() RETURNS timestamp without time zone LANGUAGE sql STABLE AS
    $f$ SELECT date_trunc('second', statement_timestamp() AT TIME ZONE 'UTC') $f$;
-- Redshift's system tables ignore the reader's snapshot: read the rows through a fresh
-- connection. `stl` names the STL relation read (refused on Serverless), NULL for a SYS view.
CREATE OR REPLACE FUNCTION public.redshift_emu_load_errors_now(stl text) RETURNS TABLE (
    userid integer, slice integer, tbl integer, starttime timestamp, session integer,
    query integer, filename character(256), line_number bigint, colname character(127),
    type character(10), col_length character(10), "position" integer,
    raw_line character(1024), raw_field_value character(1024), err_code integer,
    err_reason character(100), is_partial integer, start_offset bigint, sys_query_id bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    IF stl IS NOT NULL AND current_setting('redshift_emu.serverless', true) = 'on' THEN
        RAISE EXCEPTION 'permission denied for relation %', stl USING ERRCODE = '42501';
    END IF;
    RETURN QUERY SELECT * FROM public.dblink(
        (SELECT c.value FROM public.redshift_emu_config c WHERE c.key = 'dsn'),
        'SELECT userid, slice, tbl, starttime, session, query, filename, line_number, colname,
         type, col_length, position, raw_line, raw_field_value, err_code, err_reason,
         is_partial, start_offset, sys_query_id FROM public.redshift_emu_load_errors')
      AS t(userid integer, slice integer, tbl integer, starttime timestamp, session integer,
        query integer, filename character(256), line_number bigint, colname character(127),
        type character(10), col_length character(10), "position" integer,
        raw_line character(1024), raw_field_value character(1024), err_code integer,
        err_reason character(100), is_partial integer, start_offset bigint, sys_query_id bigint);
END $f$;
CREATE OR REPLACE FUNCTION public.redshift_emu_load_commits_now(stl text) RETURNS TABLE (
    userid integer, query integer, slice integer, name character(256), filename character(256),
    byte_offset integer, lines_scanned integer, errors integer, curtime timestamp,
    status integer, file_format character(16), is_partial integer, start_offset bigint,
    copy_job_id bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $f$
#variable_conflict use_column
BEGIN
    IF stl IS NOT NULL AND current_setting('redshift_emu.serverless', true) = 'on' THEN
        RAISE EXCEPTION 'permission denied for relation %', stl USING ERRCODE = '42501';
    END IF;
    RETURN QUERY SELECT * FROM public.dblink(
        (SELECT c.value FROM public.redshift_emu_config c WHERE c.key = 'dsn'),
        'SELECT userid, query, slice, name, filename, byte_offset, lines_scanned, errors,
         curtime, status, file_format, is_partial, start_offset, copy_job_id
         FROM public.redshift_emu_load_commits')
      AS t(userid integer, query integer, slice integer, name character(256),
        filename character(256), byte_offset integer, lines_scanned integer, errors integer,
        curtime timestamp, status integer, file_format character(16), is_partial integer,
        start_offset bigint, copy_job_id bigint);
END $f$;
CREATE OR REPLACE VIEW public.stl_load_errors AS SELECT
    userid, slice, tbl, starttime, session, query, filename, line_number, colname, type,
    col_length, position, raw_line, raw_field_value, err_code, err_reason, is_partial,
    start_offset
    FROM public.redshift_emu_load_errors_now('stl_load_errors');
CREATE OR REPLACE VIEW public.stl_load_commits AS SELECT *
    FROM public.redshift_emu_load_commits_now('stl_load_commits');
-- https://docs.aws.amazon.com/redshift/latest/dg/SYS_LOAD_ERROR_DETAIL.html: the SYS view
-- Redshift Serverless has instead of stl_load_errors. On a provisioned cluster its query_id is
-- the query pg_last_copy_id() returns; on Serverless it comes from another id space.
CREATE OR REPLACE VIEW public.sys_load_error_detail AS SELECT
    userid AS user_id, coalesce(sys_query_id, query)::bigint AS query_id,
    0::bigint AS transaction_id, session AS session_id,
    current_database()::character(64) AS database_name, tbl AS table_id,
    starttime AS start_time, filename AS file_name, line_number, colname AS column_name,
    type AS column_type, col_length AS column_length, position, err_code AS error_code,
    err_reason::character(512) AS error_message
    FROM public.redshift_emu_load_errors_now(NULL);
-- https://docs.aws.amazon.com/redshift/latest/dg/r_SVV_REDSHIFT_DATABASES.html: visible to all
-- users, on clusters and Serverless alike; database_isolation_level is "Snapshot Isolation" or
-- "Serializable", here the level this emulator gives its sessions (--isolation).
CREATE OR REPLACE VIEW public.svv_redshift_databases AS SELECT
    d.datname::varchar(128) AS database_name, 1 AS database_owner,
    'local'::varchar(32) AS database_type, NULL::varchar(128) AS database_acl,
    NULL::varchar(128) AS database_options,
    (CASE WHEN current_setting('default_transaction_isolation') = 'serializable'
          THEN 'Serializable' ELSE 'Snapshot Isolation' END)::varchar(128) AS database_isolation_level
    FROM pg_database d WHERE NOT d.datistemplate;
GRANT SELECT ON public.stl_load_errors, public.stl_load_commits, public.sys_load_error_detail,
    public.svv_redshift_databases TO PUBLIC;
GRANT ALL ON public.redshift_emu_faults TO PUBLIC;
"#;

/// One `stl_load_errors` row (https://docs.aws.amazon.com/redshift/latest/dg/r_STL_LOAD_ERRORS.html).
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
    /// `sys_load_error_detail.query_id` when it differs from `query` (Serverless).
    pub sys_query: Option<i64>,
}

/// One `stl_load_commits` row (https://docs.aws.amazon.com/redshift/latest/dg/r_STL_LOAD_COMMITS.html).
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
/// multibyte characters by '.' (STL_LOAD_ERRORS.raw_line: "multibyte chars replaced by `.`").
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

/// A fingerprint of [`DDL`] (FNV-1a), kept in `redshift_emu_config` once applied.
fn ddl_version() -> String {
    let hash = DDL.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
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
        // Replacing views and functions takes locks that a running emulator's dblink reads
        // wait on (a deadlock PostgreSQL cannot see across connections), so the DDL runs only
        // when the objects are missing or from another version of it.
        let version = ddl_version();
        let has_config: bool = tx
            .query_one(
                "SELECT to_regclass('public.redshift_emu_config') IS NOT NULL",
                &[],
            )
            .await?
            .get(0);
        let current: Option<String> = if has_config {
            tx.query_opt(
                "SELECT value FROM public.redshift_emu_config WHERE key = 'ddl_version'",
                &[],
            )
            .await?
            .map(|r| r.get(0))
        } else {
            None
        };
        if current.as_deref() != Some(version.as_str()) {
            tx.batch_execute(DDL).await?;
            tx.execute(
                "INSERT INTO public.redshift_emu_config (key, value) VALUES ('ddl_version', $1) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&version],
            )
            .await?;
        }
        tx.execute(
            "INSERT INTO public.redshift_emu_config (key, value) VALUES ('dsn', $1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&url],
        )
        .await?;
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

    /// Next query id of Serverless's SYS views (another id space than [`Self::next_query_id`]).
    pub async fn next_sys_query_id(&self) -> Result<i64, tokio_postgres::Error> {
        let c = self.client().await?;
        let row = c
            .query_one("SELECT nextval('public.redshift_emu_sys_query_id')", &[])
            .await?;
        Ok(row.get(0))
    }

    /// Consumes one armed `fault` for a COPY into `table` (its name as written or bare), if any;
    /// returns the consuming transaction's id.
    pub async fn take_fault(
        &self,
        fault: &str,
        table: &str,
        table_name: &str,
    ) -> Result<Option<i64>, tokio_postgres::Error> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                "UPDATE public.redshift_emu_faults SET remaining = remaining - 1 \
                 WHERE ctid = (SELECT ctid FROM public.redshift_emu_faults \
                     WHERE fault = $1 AND remaining > 0 \
                       AND (target IS NULL OR target = $2 OR target = $3) \
                     LIMIT 1 FOR UPDATE SKIP LOCKED) \
                 RETURNING txid_current()",
                &[&fault, &table, &table_name],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
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
                "INSERT INTO public.redshift_emu_load_errors (userid, slice, tbl, starttime, session, query, \
                 filename, line_number, colname, type, col_length, position, raw_line, raw_field_value, \
                 err_code, err_reason, is_partial, start_offset, sys_query_id) \
                 VALUES ($1, 0, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 0, 0, $16)",
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
                    &e.sys_query,
                ],
            )
            .await?;
        }
        let ins = tx
            .prepare(
                "INSERT INTO public.redshift_emu_load_commits (userid, query, slice, name, filename, byte_offset, \
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
