//! One client connection: a byte-level relay between the client and its own backend connection
//! that lets every message through unchanged except a simple-query Redshift COPY from S3, which it
//! hands to [`crate::copy_run`] once all earlier requests have been answered. The startup message
//! gains `-c` options that set the session's isolation level and the Serverless switch.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::catalog::Catalog;
use crate::copy_parse::is_redshift_copy;
use crate::s3::S3;
use crate::wire::{self, Fields, Message, MessageReader};

/// Isolation level of every client's backend session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Isolation {
    /// Redshift's SNAPSHOT isolation: PostgreSQL REPEATABLE READ.
    Snapshot,
    /// Redshift's SERIALIZABLE isolation: PostgreSQL SERIALIZABLE.
    Serializable,
}

/// What every connection shares.
pub struct Shared {
    /// Backend PostgreSQL address (host:port).
    pub backend: String,
    /// Isolation level of the clients' sessions.
    pub isolation: Isolation,
    /// Behave like Redshift Serverless (no STL views, SYS query ids of their own).
    pub serverless: bool,
    /// Side connection.
    pub catalog: Catalog,
    /// S3 client.
    pub s3: S3,
}

/// A proxied session: the client's writer and the backend connection.
pub struct Session {
    /// Writer towards the client.
    pub client_w: OwnedWriteHalf,
    /// Writer towards the backend.
    pub backend_w: OwnedWriteHalf,
    /// Reader from the backend.
    pub backend_r: MessageReader<OwnedReadHalf>,
    /// Backend pid from BackendKeyData (the session id).
    pub pid: Option<i32>,
    /// Requests (Query/Sync) not yet answered with ReadyForQuery.
    pending: usize,
    /// Whether the last ReadyForQuery said a transaction block is open.
    in_transaction: bool,
    /// Shared state.
    pub shared: Arc<Shared>,
}

/// Result of a query the emulator ran on the backend for itself.
pub struct Outcome {
    /// Text rows.
    pub rows: Vec<Vec<Option<String>>>,
    /// The ErrorResponse, if the query failed.
    pub error: Option<Fields>,
    /// The ReadyForQuery message that ended it.
    pub ready: Message,
}

/// A client request the emulator answers itself once the earlier ones are answered.
enum Deferred {
    /// A Redshift COPY from S3.
    Copy(String),
    /// A statement Redshift refuses: SQLSTATE and message.
    Refuse(&'static str, String),
}

/// Serves one client connection to the end.
pub async fn serve(client: TcpStream, shared: Arc<Shared>) -> anyhow::Result<()> {
    client.set_nodelay(true)?;
    let (cr, mut cw) = client.into_split();
    let mut cr = MessageReader::new(cr);
    let startup = loop {
        let Some(pkt) = cr.next_startup().await? else {
            return Ok(());
        };
        match wire::startup_code(&pkt) {
            // No TLS: clients with sslmode=prefer fall back to plain text.
            wire::SSL_REQUEST | wire::GSSENC_REQUEST => cw.write_all(b"N").await?,
            wire::CANCEL_REQUEST => {
                // BackendKeyData is relayed unchanged, so the backend understands the key.
                let mut b = TcpStream::connect(&shared.backend).await?;
                b.write_all(&pkt).await?;
                return Ok(());
            }
            _ => break pkt,
        }
    };
    let backend = TcpStream::connect(&shared.backend).await?;
    backend.set_nodelay(true)?;
    let (br, mut bw) = backend.into_split();
    bw.write_all(&wire::add_startup_options(
        &startup,
        &session_options(&shared),
    ))
    .await?;
    let mut s = Session {
        client_w: cw,
        backend_w: bw,
        backend_r: MessageReader::new(br),
        pid: None,
        // The startup exchange ends with one ReadyForQuery.
        pending: 1,
        in_transaction: false,
        shared,
    };
    s.relay(&mut cr).await
}

/// The `-c` switches every client session starts with. A leading `LOCK` takes no snapshot in
/// PostgreSQL, so `BEGIN; LOCK t; SELECT ...` still sees what was committed before the lock.
fn session_options(shared: &Shared) -> String {
    let level = match shared.isolation {
        Isolation::Snapshot => r"repeatable\ read",
        Isolation::Serializable => "serializable",
    };
    let mut o = format!("-c default_transaction_isolation={level}");
    if shared.serverless {
        o.push_str(" -c redshift_emu.serverless=on");
    }
    o
}

impl Session {
    async fn relay(&mut self, cr: &mut MessageReader<OwnedReadHalf>) -> anyhow::Result<()> {
        let mut deferred: Option<Deferred> = None;
        loop {
            if self.pending == 0 {
                match deferred.take() {
                    Some(Deferred::Copy(sql)) => {
                        crate::copy_run::run(self, &sql).await?;
                        continue;
                    }
                    Some(Deferred::Refuse(code, message)) => {
                        tracing::debug!(pid = ?self.pid, %message, "statement refused as redshift refuses it");
                        self.fail(code, &message, None, None).await?;
                        continue;
                    }
                    None => {}
                }
            }
            tokio::select! {
                m = cr.next(), if deferred.is_none() => {
                    let Some(first) = m? else { return Ok(()) };
                    let mut out = BytesMut::new();
                    let mut next = Some(first);
                    while let Some(m) = next.take() {
                        match m.tag {
                            b'Q' => {
                                let sql = wire::query_text(&m.body);
                                if is_redshift_copy(&sql) {
                                    tracing::debug!(pid = ?self.pid, "redshift copy intercepted");
                                    deferred = Some(Deferred::Copy(sql));
                                    break;
                                }
                                // Whether a block is open is known once earlier requests end.
                                let in_tx = self.in_transaction || self.pending > 0;
                                if let Some((code, message)) = crate::ddl::refusal(&sql, in_tx) {
                                    deferred = Some(Deferred::Refuse(code, message));
                                    break;
                                }
                                if let Some(pg) = crate::ddl::pg_create(&sql) {
                                    self.pending += 1;
                                    wire::query(&pg).encode(&mut out);
                                    next = cr.next_buffered();
                                    continue;
                                }
                                self.pending += 1;
                            }
                            b'S' => self.pending += 1,
                            _ => {}
                        }
                        let terminate = m.tag == b'X';
                        m.encode(&mut out);
                        if terminate {
                            self.backend_w.write_all(&out).await?;
                            return Ok(());
                        }
                        next = cr.next_buffered();
                    }
                    self.backend_w.write_all(&out).await?;
                }
                m = self.backend_r.next() => {
                    let Some(first) = m? else { return Ok(()) };
                    let mut out = BytesMut::new();
                    let mut next = Some(first);
                    while let Some(m) = next.take() {
                        self.observe(&m);
                        m.encode(&mut out);
                        next = self.backend_r.next_buffered();
                    }
                    self.client_w.write_all(&out).await?;
                }
            }
        }
    }

    fn observe(&mut self, m: &Message) {
        match m.tag {
            b'K' if m.body.len() >= 4 => {
                let pid = i32::from_be_bytes([m.body[0], m.body[1], m.body[2], m.body[3]]);
                self.pid = Some(pid);
            }
            b'Z' => {
                self.pending = self.pending.saturating_sub(1);
                self.in_transaction = m.body.first().is_some_and(|s| *s != b'I');
            }
            _ => {}
        }
    }

    /// Sends messages to the client.
    pub async fn send_client(&mut self, msgs: &[Message]) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        for m in msgs {
            m.encode(&mut out);
        }
        self.client_w.write_all(&out).await
    }

    /// Sends one message to the backend.
    pub async fn send_backend(&mut self, m: &Message) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        m.encode(&mut out);
        self.backend_w.write_all(&out).await
    }

    /// Next backend message; asynchronous ones (ParameterStatus, notifications) go on to the
    /// client, notices the emulator caused are dropped.
    pub async fn recv_backend(&mut self) -> std::io::Result<Message> {
        loop {
            let m = self
                .backend_r
                .next()
                .await?
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
            match m.tag {
                b'S' | b'A' => self.send_client(&[m]).await?,
                b'N' => {}
                _ => return Ok(m),
            }
        }
    }

    /// Reads backend messages up to ReadyForQuery.
    pub async fn finish(&mut self, mut error: Option<Fields>) -> std::io::Result<Outcome> {
        let mut rows = Vec::new();
        loop {
            let m = self.recv_backend().await?;
            match m.tag {
                b'D' => rows.push(wire::data_row(&m.body)),
                b'E' => error = Some(Fields::parse(&m.body)),
                // A COPY we started must not leave the backend in copy-in mode.
                b'G' => {
                    self.send_backend(&wire::copy_fail("unexpected copy"))
                        .await?
                }
                b'Z' => {
                    return Ok(Outcome {
                        rows,
                        error,
                        ready: m,
                    })
                }
                _ => {}
            }
        }
    }

    /// Runs one simple query on the backend for the emulator itself.
    pub async fn backend_query(&mut self, sql: &str) -> std::io::Result<Outcome> {
        self.send_backend(&wire::query(sql)).await?;
        self.finish(None).await
    }

    /// Relays an error and the ReadyForQuery that followed it to the client.
    pub async fn relay_error(&mut self, mut f: Fields, ready: Message) -> std::io::Result<()> {
        f.strip_internal();
        self.send_client(&[f.to_message(b'E'), ready]).await
    }

    /// Fails the client's statement the way a failed statement fails: the backend raises the
    /// error itself (so an open transaction becomes aborted) and the client gets that error.
    pub async fn fail(
        &mut self,
        sqlstate: &str,
        message: &str,
        detail: Option<&str>,
        position: Option<usize>,
    ) -> std::io::Result<()> {
        let lit = |s: &str| format!("'{}'", s.replace('\'', "''").replace("$emu$", "$ emu$"));
        let mut sql = format!(
            "DO $emu$ BEGIN RAISE EXCEPTION USING ERRCODE = {}, MESSAGE = {}",
            lit(sqlstate),
            lit(message)
        );
        if let Some(d) = detail {
            sql.push_str(&format!(", DETAIL = {}", lit(d)));
        }
        sql.push_str("; END $emu$");
        let out = self.backend_query(&sql).await?;
        let mut f = out
            .error
            .unwrap_or_else(|| wire::error_fields(sqlstate, message, detail));
        if let Some(p) = position {
            f.set(b'P', p.to_string());
        }
        self.relay_error(f, out.ready).await
    }
}
