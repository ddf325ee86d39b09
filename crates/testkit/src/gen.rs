//! Deterministic generator of realistic JSON log records (DESIGN.md, "Data contract"): the
//! sample `logs.json` and the input of benchmarks and load tests.
//!
//! Records stream to any [`io::Write`] one at a time through a reused buffer, so memory stays
//! constant whatever the record count. The output is a pure function of [`GenOptions`]: the
//! pseudo-random numbers come from a xoshiro256** generator implemented here (seeded through
//! splitmix64), not from `rand`, whose algorithms may change between versions, and every
//! computation is integer arithmetic, so a seed gives the same bytes on every platform.
//!
//! Levels come in blocks of 100 records holding exactly the mix of [`LEVEL_MIX`] (68% info, 14%
//! debug, 10% warn, 6% error, 1% trace, 1% fatal) in shuffled order, so every output of at least
//! 100 records holds all six levels. Services, their messages, HTTP routes, SQL and stack traces
//! come from a static catalog (`gen/catalog.rs`).

use std::io::{self, BufWriter, Write};
use std::time::Duration;

use schema::{Level, Timestamp};
use serde::Serialize;
use thiserror::Error;

mod catalog;

use catalog::{Event, Service, SERVICES};

/// Default start of the time window: `2026-11-25T00:00:00Z`.
pub const DEFAULT_START: &str = "2026-11-25T00:00:00Z";
/// [`DEFAULT_START`] in nanoseconds since the Unix epoch.
const DEFAULT_START_NANOS: i64 = 1_795_564_800 * NANOS_PER_SEC;
/// Default length of the time window: 24 hours.
pub const DEFAULT_SPAN: Duration = Duration::from_secs(24 * 3600);

/// Levels per block of 100 records, in percent.
pub const LEVEL_MIX: [(Level, usize); 6] = [
    (Level::Info, 68),
    (Level::Debug, 14),
    (Level::Warn, 10),
    (Level::Error, 6),
    (Level::Trace, 1),
    (Level::Fatal, 1),
];
/// Records per level block: the sum of [`LEVEL_MIX`].
const BLOCK: usize = 100;

const NANOS_PER_SEC: i64 = 1_000_000_000;
const NANOS_PER_MILLI: u64 = 1_000_000;
/// Capacity of the output buffer in front of the writer.
const OUTPUT_BUFFER: usize = 64 * 1024;
/// How many recent traces a record may join (share `trace_id` and `request_id` with).
const RECENT_TRACES: usize = 16;
/// Percentage of records that continue a recent trace instead of starting one.
const JOIN_TRACE_PERCENT: u64 = 25;
/// Percentage of records mentioning a user that carry the `user` object (not every log call
/// has the user context at hand; this also keeps the average record near 350 bytes).
const MENTIONED_USER_PERCENT: u64 = 50;
/// Percentage of HTTP records that carry a `user` object without mentioning the user.
const EXTRA_USER_PERCENT: u64 = 4;
/// Percentage of trace/debug/info records of a service with a database that carry a `db` object.
const EXTRA_DB_PERCENT: u64 = 3;

/// How records are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// A JSON array, one compact record per line indented by two spaces (the `logs.json` form).
    #[default]
    Array,
    /// Newline-delimited JSON: one compact record per line.
    Ndjson,
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenOptions {
    /// Number of records. Default 1000.
    pub records: u64,
    /// Seed of the pseudo-random generator: equal seeds (and options) give equal bytes.
    /// Default 42.
    pub seed: u64,
    /// Output layout. Default [`Format::Array`].
    pub format: Format,
    /// Start of the time window. Default [`DEFAULT_START`].
    pub start: Timestamp,
    /// Length of the time window the records spread over. Default [`DEFAULT_SPAN`] (24 h).
    pub span: Duration,
}

impl Default for GenOptions {
    fn default() -> Self {
        Self {
            records: 1000,
            seed: 42,
            format: Format::Array,
            start: Timestamp::EPOCH.saturating_add_nanos(DEFAULT_START_NANOS),
            span: DEFAULT_SPAN,
        }
    }
}

/// Why generation failed.
#[derive(Debug, Error)]
pub enum GenError {
    /// Writing the output failed; a reader that went away shows as
    /// [`GenError::is_broken_pipe`].
    #[error("cannot write generated records: {0}")]
    Io(#[from] io::Error),
    /// serde_json could not serialise a record.
    #[error("cannot serialise a generated record: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The window `start + span` ends after 2262-04-11, the end of the timestamp range.
    #[error("time window ends after 2262-04-11 (start plus span is out of range)")]
    SpanOutOfRange,
}

impl GenError {
    /// Whether the reader closed the output (e.g. `testkit gen | head`): not a failure of the
    /// generator.
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            Self::Io(e) => e.kind() == io::ErrorKind::BrokenPipe,
            Self::Serialize(e) => e.io_error_kind() == Some(io::ErrorKind::BrokenPipe),
            Self::SpanOutOfRange => false,
        }
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenSummary {
    /// Records written.
    pub records: u64,
    /// Bytes written, separators and brackets included.
    pub bytes: u64,
}

/// Writes `options.records` records to `out` in `options.format`, buffered, and flushes.
pub fn generate<W: Write>(options: &GenOptions, out: W) -> Result<GenSummary, GenError> {
    let mut generator = Generator::new(options)?;
    let mut out = BufWriter::with_capacity(OUTPUT_BUFFER, out);
    let mut line = Vec::with_capacity(1024);
    let mut bytes = 0u64;
    let mut records = 0u64;
    let array = options.format == Format::Array;
    if array {
        let open: &[u8] = if options.records == 0 { b"[" } else { b"[\n" };
        out.write_all(open)?;
        bytes += open.len() as u64;
    }
    loop {
        line.clear();
        if array {
            line.extend_from_slice(if records == 0 { b"  " } else { b",\n  " });
        }
        if !generator.write_next(&mut line)? {
            break;
        }
        if !array {
            line.push(b'\n');
        }
        out.write_all(&line)?;
        bytes += line.len() as u64;
        records += 1;
    }
    if array {
        let close: &[u8] = if records == 0 { b"]\n" } else { b"\n]\n" };
        out.write_all(close)?;
        bytes += close.len() as u64;
    }
    out.flush()?;
    Ok(GenSummary { records, bytes })
}

/// Produces the records of one [`GenOptions`] one by one, as compact JSON.
///
/// [`generate`] adds the layout; use the generator directly to feed records elsewhere (e.g.
/// straight into a producer under test).
#[derive(Debug)]
pub struct Generator {
    rng: Rng,
    records: u64,
    next: u64,
    start_nanos: u64,
    span_nanos: u64,
    services: Vec<ServiceTable>,
    service_weights: Vec<u32>,
    levels: [Level; BLOCK],
    recent: Vec<(u128, u128)>,
    scratch: Scratch,
}

impl Generator {
    /// A generator for `options` (its `format` is ignored: records are always compact).
    pub fn new(options: &GenOptions) -> Result<Self, GenError> {
        let span_nanos =
            u64::try_from(options.span.as_nanos()).map_err(|_| GenError::SpanOutOfRange)?;
        let start_nanos = u64::try_from(options.start.as_nanos()).unwrap_or(0);
        let end = start_nanos
            .checked_add(span_nanos)
            .ok_or(GenError::SpanOutOfRange)?;
        if i64::try_from(end).is_err() {
            return Err(GenError::SpanOutOfRange);
        }
        let mut rng = Rng::new(options.seed);
        let services = SERVICES
            .iter()
            .map(|service| ServiceTable::new(service, &mut rng))
            .collect();
        let mut total = 0;
        let service_weights = SERVICES
            .iter()
            .map(|s| {
                total += s.weight;
                total
            })
            .collect();
        let mut levels = [Level::Info; BLOCK];
        let mut slots = levels.iter_mut();
        for (level, count) in LEVEL_MIX {
            for slot in slots.by_ref().take(count) {
                *slot = level;
            }
        }
        Ok(Self {
            rng,
            records: options.records,
            next: 0,
            start_nanos,
            span_nanos,
            services,
            service_weights,
            levels,
            recent: Vec::with_capacity(RECENT_TRACES),
            scratch: Scratch::default(),
        })
    }

    /// Appends the next record as compact JSON (no newline) to `out`; `false` once all
    /// records were produced (then `out` is left as it was).
    pub fn write_next(&mut self, out: &mut Vec<u8>) -> Result<bool, GenError> {
        if self.next >= self.records {
            return Ok(false);
        }
        let index = self.next;
        self.next += 1;
        let rng = &mut self.rng;
        let s = &mut self.scratch;

        // Evenly spread over the window with jitter below one step: non-decreasing, and the
        // last record stays inside the window.
        let span = u128::from(self.span_nanos);
        let base = span * u128::from(index) / u128::from(self.records);
        let step = self.span_nanos / self.records;
        let jitter = if step > 0 { rng.below(step) } else { 0 };
        let nanos = self.start_nanos + u64::try_from(base).unwrap_or(0) + jitter;
        let nanos = nanos - nanos % NANOS_PER_MILLI;
        let timestamp = Timestamp::EPOCH.saturating_add_nanos(i64::try_from(nanos).unwrap_or(0));
        s.timestamp.clear();
        timestamp.write_rfc3339(&mut s.timestamp);
        s.timestamp.truncate(23); // keep milliseconds: "YYYY-MM-DDTHH:MM:SS.mmm"
        s.timestamp.push(b'Z');

        let block_pos = (index % BLOCK as u64) as usize;
        if block_pos == 0 {
            rng.shuffle(&mut self.levels);
        }
        let level = self.levels[block_pos];

        let service_pick = rng.below(u64::from(self.service_weights.last().copied().unwrap_or(1)));
        let service_index = self
            .service_weights
            .iter()
            .position(|&end| u64::from(end) > service_pick)
            .unwrap_or(0);
        let table = &self.services[service_index];
        let service = table.service;
        let event = table.levels[level_index(level)].pick(rng);

        let user = rng.range(10_000, 99_999) as u32;
        let draw = Draw {
            user,
            order: rng.range(100_000, 999_999) as u32,
            sku: rng.range(10_000, 99_999) as u32,
            ms: duration_ms(rng, level, event.uses_ms),
            rows: rng.range(2, 500),
            db_hundredths: rng.range(20, 25_000),
            qty: rng.range(1, 9),
            n: rng.range(2, 64),
            retry: rng.range(1, 5),
            hits: rng.range(2, 2_000),
            amount_cents: rng.range(199, 49_999),
            ip: rng.next_u64() as u32,
            pick: rng.next_u64(),
            error_type: event.event.error,
        };

        s.host.clear();
        s.host
            .push_str(&table.hosts[rng.below(table.hosts.len() as u64) as usize]);

        let (trace, request) = if !self.recent.is_empty() && rng.percent(JOIN_TRACE_PERCENT) {
            self.recent[rng.below(self.recent.len() as u64) as usize]
        } else {
            let ids = (rng.next_u128(), rng.next_u128());
            if self.recent.len() < RECENT_TRACES {
                self.recent.push(ids);
            } else {
                self.recent[(index % RECENT_TRACES as u64) as usize] = ids;
            }
            ids
        };
        s.trace_id.clear();
        push_hex(&mut s.trace_id, trace, 32);
        s.span_id.clear();
        push_hex(&mut s.span_id, u128::from(rng.next_u64()), 16);
        s.request_id.clear();
        push_uuid_v4(&mut s.request_id, request);

        s.message.clear();
        render(event.event.message, &draw, &mut s.message);

        let http = if event.method.is_empty() {
            None
        } else {
            s.path.clear();
            render(event.path, &draw, &mut s.path);
            let status = match event.status {
                Some(status) => status,
                None => status_for(rng, level, event.method),
            };
            Some(Http {
                method: event.method,
                path: &s.path,
                status,
                duration_ms: draw.ms,
            })
        };

        let with_user = if event.uses_user {
            rng.percent(MENTIONED_USER_PERCENT)
        } else {
            http.is_some() && rng.percent(EXTRA_USER_PERCENT)
        };
        let user = with_user.then(|| {
            s.user_id.clear();
            render("{user}", &draw, &mut s.user_id);
            User {
                id: &s.user_id,
                region: region_of(draw.user),
                plan: plan_of(draw.user),
            }
        });

        let db = (!service.statements.is_empty()
            && (event.uses_db || (level <= Level::Info && rng.percent(EXTRA_DB_PERCENT))))
        .then(|| Db {
            statement: service.statements[rng.below(service.statements.len() as u64) as usize],
            rows: draw.rows,
            duration_ms: draw.db_hundredths as f64 / 100.0,
        });

        let error = (level >= Level::Error).then(|| {
            s.stack.clear();
            render(service.stack, &draw, &mut s.stack);
            ErrorInfo {
                kind: draw.error_type,
                stack: &s.stack,
            }
        });

        let record = Record {
            timestamp: &String::from_utf8_lossy(&s.timestamp),
            level: level.as_str(),
            service: service.name,
            message: &s.message,
            host: &s.host,
            trace_id: &s.trace_id,
            span_id: &s.span_id,
            request_id: &s.request_id,
            http,
            user,
            db,
            error,
        };
        serde_json::to_writer(&mut *out, &record)?;
        Ok(true)
    }
}

/// One record as serialised: the contract fields first, then the rest in a fixed order.
#[derive(Serialize)]
struct Record<'a> {
    timestamp: &'a str,
    level: &'static str,
    service: &'static str,
    message: &'a str,
    host: &'a str,
    trace_id: &'a str,
    span_id: &'a str,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    http: Option<Http<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<User<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    db: Option<Db>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorInfo<'a>>,
}

#[derive(Serialize)]
struct Http<'a> {
    method: &'static str,
    path: &'a str,
    status: u16,
    duration_ms: u64,
}

#[derive(Serialize)]
struct User<'a> {
    id: &'a str,
    region: &'static str,
    plan: &'static str,
}

#[derive(Serialize)]
struct Db {
    statement: &'static str,
    rows: u64,
    duration_ms: f64,
}

#[derive(Serialize)]
struct ErrorInfo<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    stack: &'a str,
}

/// Buffers reused from record to record, so steady-state generation does not allocate.
#[derive(Debug, Default)]
struct Scratch {
    timestamp: Vec<u8>,
    host: String,
    trace_id: String,
    span_id: String,
    request_id: String,
    message: String,
    path: String,
    user_id: String,
    stack: String,
}

/// The values one record's templates draw from, so that message, path and nested objects agree.
struct Draw {
    user: u32,
    order: u32,
    sku: u32,
    ms: u64,
    rows: u64,
    db_hundredths: u64,
    qty: u64,
    n: u64,
    retry: u64,
    hits: u64,
    amount_cents: u64,
    ip: u32,
    /// Random bits for the categorical placeholders (currency, provider, ...).
    pick: u64,
    error_type: &'static str,
}

/// A service's events by level, with its hosts.
#[derive(Debug)]
struct ServiceTable {
    service: &'static Service,
    hosts: Vec<String>,
    levels: [LevelTable; 6],
}

impl ServiceTable {
    /// Prepares `service`'s events and names 2–4 replicas `<service>-<hash>-<n>`.
    fn new(service: &'static Service, rng: &mut Rng) -> Self {
        let replicas = rng.range(2, 4);
        let mut hash = String::with_capacity(4);
        push_hex(&mut hash, u128::from(rng.below(0x1_0000)), 4);
        let hosts = (0..replicas)
            .map(|n| format!("{}-{hash}-{n}", service.name))
            .collect();
        let levels = Level::ALL.map(|level| {
            let mut total = 0;
            let entries = service
                .events
                .iter()
                .filter(|e| e.level == level)
                .map(|e| {
                    total += e.weight;
                    (total, Prepared::new(e))
                })
                .collect();
            LevelTable { total, entries }
        });
        Self {
            service,
            hosts,
            levels,
        }
    }
}

/// A service's events of one level with cumulative weights.
#[derive(Debug)]
struct LevelTable {
    total: u32,
    entries: Vec<(u32, Prepared)>,
}

impl LevelTable {
    fn pick(&self, rng: &mut Rng) -> Prepared {
        let r = rng.below(u64::from(self.total.max(1)));
        self.entries
            .iter()
            .find(|(end, _)| u64::from(*end) > r)
            .or(self.entries.last())
            .map_or(Prepared::EMPTY, |(_, p)| *p)
    }
}

/// An [`Event`] with its HTTP spec parsed and its placeholders looked at once.
#[derive(Debug, Clone, Copy)]
struct Prepared {
    event: &'static Event,
    /// `""` when the event is not an HTTP request.
    method: &'static str,
    path: &'static str,
    status: Option<u16>,
    uses_user: bool,
    uses_db: bool,
    /// The message reports the duration, so a warn/error one should be slow.
    uses_ms: bool,
}

impl Prepared {
    /// Stands in should a service lack events of a level (the catalog tests forbid it).
    const EMPTY: Self = Self {
        event: &Event {
            level: Level::Info,
            weight: 0,
            http: "",
            message: "",
            error: "",
        },
        method: "",
        path: "",
        status: None,
        uses_user: false,
        uses_db: false,
        uses_ms: false,
    };

    fn new(event: &'static Event) -> Self {
        let mut parts = event.http.split_whitespace();
        let method = parts.next().unwrap_or("");
        let path = parts.next().unwrap_or("");
        let status = parts.next().and_then(|s| s.parse().ok());
        let message = event.message;
        Self {
            event,
            method,
            path,
            status,
            uses_user: message.contains("{user}") || path.contains("{user}"),
            uses_db: message.contains("{rows}") || message.contains("{db_ms}"),
            uses_ms: message.contains("{ms}"),
        }
    }
}

/// Appends `template` to `out` with each `{name}` replaced by its value from `draw`.
fn render(template: &str, draw: &Draw, out: &mut String) {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let tail = &rest[open + 1..];
        let Some(close) = tail.find('}') else {
            out.push_str(&rest[open..]);
            return;
        };
        fill(&tail[..close], draw, out);
        rest = &tail[close + 1..];
    }
    out.push_str(rest);
}

/// Appends the value of placeholder `name`; an unknown name is kept as `{name}`.
fn fill(name: &str, d: &Draw, out: &mut String) {
    use catalog::{
        CHANNELS, CURRENCIES, DECLINE_CODES, MAIL_DOMAINS, PROVIDERS, QUERIES, TEMPLATES,
        WAREHOUSES,
    };
    match name {
        "amount" => push_hundredths(out, d.amount_cents),
        "channel" => out.push_str(choose(CHANNELS, d.pick)),
        "code" => out.push_str(choose(DECLINE_CODES, d.pick >> 8)),
        "currency" => out.push_str(choose(CURRENCIES, d.pick >> 16)),
        "db_ms" => push_hundredths(out, d.db_hundredths),
        "email" => {
            // Masked, as a careful service logs it: first letter and domain only.
            out.push(char::from(b'a' + (d.user % 26) as u8));
            out.push_str("***@");
            out.push_str(choose(MAIL_DOMAINS, u64::from(d.user / 26)));
        }
        "hits" => push_u64(out, d.hits),
        "ip" => {
            // Documentation ranges (RFC 5737) only.
            out.push_str(if d.ip & 1 == 0 {
                "203.0.113."
            } else {
                "198.51.100."
            });
            push_u64(out, u64::from((d.ip >> 8) % 254 + 1));
        }
        "ms" => push_u64(out, d.ms),
        "n" => push_u64(out, d.n),
        "order" => {
            out.push_str("ORD-");
            push_u64(out, u64::from(d.order));
        }
        "plan" => out.push_str(plan_of(d.user)),
        "provider" => out.push_str(choose(PROVIDERS, d.pick >> 24)),
        "qty" => push_u64(out, d.qty),
        "query" => out.push_str(choose(QUERIES, d.pick >> 32)),
        "region" => out.push_str(region_of(d.user)),
        "retry" => push_u64(out, d.retry),
        "rows" => push_u64(out, d.rows),
        "sku" => {
            out.push_str("SKU-");
            push_u64(out, u64::from(d.sku));
        }
        "template" => out.push_str(choose(TEMPLATES, d.pick >> 40)),
        "type" => out.push_str(d.error_type),
        "user" => {
            out.push_str("usr_");
            push_u64(out, u64::from(d.user));
        }
        "warehouse" => out.push_str(choose(WAREHOUSES, d.pick >> 48)),
        _ => {
            out.push('{');
            out.push_str(name);
            out.push('}');
        }
    }
}

fn choose(items: &[&'static str], bits: u64) -> &'static str {
    let len = items.len().max(1) as u64;
    items.get((bits % len) as usize).copied().unwrap_or("")
}

/// A user's region: a function of the id, so a user always lives in one region.
fn region_of(user: u32) -> &'static str {
    choose(
        catalog::REGIONS,
        u64::from(user.wrapping_mul(0x9E37_79B1) >> 7),
    )
}

/// A user's plan: 60% free, 30% pro, 10% enterprise, a function of the id.
fn plan_of(user: u32) -> &'static str {
    match (user.wrapping_mul(0x85EB_CA6B) >> 11) % 10 {
        0..=5 => "free",
        6..=8 => "pro",
        _ => "enterprise",
    }
}

/// Request duration: mostly fast with a long tail; slow when a warn/error message is about it.
fn duration_ms(rng: &mut Rng, level: Level, about_duration: bool) -> u64 {
    match (level, about_duration) {
        (Level::Error | Level::Fatal, true) => rng.range(2_000, 30_000),
        (Level::Warn, true) => rng.range(800, 8_000),
        _ => match rng.below(100) {
            0..=69 => rng.range(2, 60),
            70..=94 => rng.range(60, 400),
            _ => rng.range(400, 2_500),
        },
    }
}

/// An HTTP status that agrees with the level: 2xx/304 up to info, 4xx for warn, 5xx above.
fn status_for(rng: &mut Rng, level: Level, method: &str) -> u16 {
    match level {
        Level::Trace | Level::Debug | Level::Info => match method {
            "POST" if rng.percent(70) => 201,
            "DELETE" => 204,
            "GET" if rng.percent(6) => 304,
            _ => 200,
        },
        Level::Warn => [400, 404, 409, 422, 429][rng.below(5) as usize],
        Level::Error => match rng.below(10) {
            0..=4 => 500,
            5 | 6 => 502,
            7 | 8 => 503,
            _ => 504,
        },
        Level::Fatal => 503,
    }
}

fn level_index(level: Level) -> usize {
    match level {
        Level::Trace => 0,
        Level::Debug => 1,
        Level::Info => 2,
        Level::Warn => 3,
        Level::Error => 4,
        Level::Fatal => 5,
    }
}

fn push_u64(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        out.push(char::from(b));
    }
}

/// Appends `v / 100` with two decimals, e.g. `1234` → `12.34`.
fn push_hundredths(out: &mut String, v: u64) {
    push_u64(out, v / 100);
    out.push('.');
    out.push(char::from(b'0' + (v / 10 % 10) as u8));
    out.push(char::from(b'0' + (v % 10) as u8));
}

/// Appends the low `digits` nibbles of `v` as lowercase hex.
fn push_hex(out: &mut String, v: u128, digits: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..digits).rev() {
        out.push(char::from(HEX[((v >> (i * 4)) & 0xf) as usize]));
    }
}

/// Appends `bits` as a version 4 (random) UUID, e.g. `6f1c2a9e-3b4d-4e5f-9a0b-1c2d3e4f5a6b`.
fn push_uuid_v4(out: &mut String, bits: u128) {
    let v = (bits & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    push_hex(out, v >> 96, 8);
    for (shift, digits) in [(80, 4), (64, 4), (48, 4)] {
        out.push('-');
        push_hex(out, v >> shift, digits);
    }
    out.push('-');
    push_hex(out, v, 12);
}

/// xoshiro256** 1.0 (Blackman and Vigna), its state seeded by splitmix64: small, fast and
/// fixed, so the output never changes with a dependency's version.
#[derive(Debug, Clone)]
struct Rng {
    s: [u64; 4],
}

impl Rng {
    fn new(seed: u64) -> Self {
        let mut state = seed;
        let mut splitmix64 = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Self {
            s: [splitmix64(), splitmix64(), splitmix64(), splitmix64()],
        }
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    fn next_u128(&mut self) -> u128 {
        (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64())
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2⁻⁴⁰ for our `n`).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `p`%.
    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    /// Fisher–Yates.
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;
    use serde_json::Value;

    use super::{Rng, *};

    fn options(records: u64, seed: u64, format: Format) -> GenOptions {
        GenOptions {
            records,
            seed,
            format,
            ..GenOptions::default()
        }
    }

    fn output(options: &GenOptions) -> String {
        let mut out = Vec::new();
        let summary = generate(options, &mut out).unwrap();
        assert_eq!(summary.records, options.records);
        assert_eq!(summary.bytes, out.len() as u64);
        String::from_utf8(out).unwrap()
    }

    /// The compact records of an output, whichever the format.
    fn records(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| *l != "[" && *l != "]")
            .map(|l| l.trim_start().trim_end_matches(','))
            .collect()
    }

    fn values(records: u64, seed: u64) -> Vec<Value> {
        serde_json::from_str(&output(&options(records, seed, Format::Array))).unwrap()
    }

    fn millis(timestamp: &str) -> i64 {
        Timestamp::parse_rfc3339(timestamp).unwrap().as_nanos() / 1_000_000
    }

    #[test]
    fn same_seed_produces_identical_bytes() {
        for format in [Format::Array, Format::Ndjson] {
            assert_eq!(
                output(&options(500, 7, format)),
                output(&options(500, 7, format))
            );
        }
    }

    #[test]
    fn different_seeds_produce_different_records() {
        let a = output(&options(200, 1, Format::Ndjson));
        let b = output(&options(200, 2, Format::Ndjson));
        let same = records(&a)
            .iter()
            .zip(records(&b))
            .filter(|(x, y)| **x == *y)
            .count();
        assert_eq!(same, 0);
    }

    #[test]
    fn prng_matches_the_published_xoshiro256starstar_and_splitmix64_values() {
        // Known answers of the reference C implementations (also in rand_xoshiro's tests).
        let mut rng = Rng { s: [1, 2, 3, 4] };
        let first: Vec<u64> = (0..4).map(|_| rng.next_u64()).collect();
        assert_eq!(first, [11_520, 0, 1_509_978_240, 1_215_971_899_390_074_240]);
        assert_eq!(Rng::new(0).s[0], 0xe220_a839_7b1d_cdaf);
        // Pinned so that the data of a seed never changes by accident.
        let mut rng = Rng::new(42);
        let first: Vec<u64> = (0..4).map(|_| rng.next_u64()).collect();
        assert_eq!(
            first,
            [
                0x1578_0b2e_0c2e_c716,
                0x6104_d986_6d11_3a7e,
                0xae17_5332_39e4_99a1,
                0xecb8_ad47_03b3_60a1
            ]
        );
    }

    #[test]
    fn every_record_passes_the_schema_in_both_formats() {
        for format in [Format::Array, Format::Ndjson] {
            let text = output(&options(5_000, 42, format));
            let lines = records(&text);
            assert_eq!(lines.len(), 5_000);
            for (i, line) in lines.iter().enumerate() {
                if let Err(e) = schema::parse_record(line) {
                    panic!("{format:?} record {i} rejected: {e}\n{line}");
                }
            }
        }
    }

    #[test]
    fn ndjson_has_one_compact_record_per_line() {
        let text = output(&options(300, 3, Format::Ndjson));
        assert!(text.ends_with("}\n"));
        for line in text.lines() {
            let value: Value = serde_json::from_str(line).unwrap();
            assert_eq!(serde_json::to_string(&value).unwrap().len(), line.len());
        }
        assert_eq!(text.lines().count(), 300);
    }

    #[test]
    fn array_output_is_valid_json_with_one_record_per_line() {
        let text = output(&options(1_000, 9, Format::Array));
        let parsed: Vec<Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed.len(), 1_000);
        assert!(text.starts_with("[\n  {\"timestamp\":"));
        assert!(text.ends_with("}\n]\n"));
        assert_eq!(text.lines().count(), 1_002);
    }

    #[test]
    fn zero_records_make_an_empty_array_or_nothing() {
        assert_eq!(output(&options(0, 1, Format::Array)), "[]\n");
        assert_eq!(output(&options(0, 1, Format::Ndjson)), "");
        let one: Vec<Value> = serde_json::from_str(&output(&options(1, 1, Format::Array))).unwrap();
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn fields_come_in_contract_order() {
        let text = output(&options(50, 5, Format::Ndjson));
        for line in text.lines() {
            let keys: Vec<&str> = line
                .split("\":")
                .take(8)
                .map(|k| k.rsplit('"').next().unwrap())
                .collect();
            assert_eq!(
                keys,
                [
                    "timestamp",
                    "level",
                    "service",
                    "message",
                    "host",
                    "trace_id",
                    "span_id",
                    "request_id"
                ]
            );
        }
    }

    #[test]
    fn all_six_levels_and_eight_services_appear_in_2000_records() {
        let all = values(2_000, 42);
        let levels: BTreeSet<&str> = all.iter().map(|v| v["level"].as_str().unwrap()).collect();
        assert_eq!(levels.len(), 6, "{levels:?}");
        let services: BTreeSet<&str> = all.iter().map(|v| v["service"].as_str().unwrap()).collect();
        assert!(services.len() >= 8, "{services:?}");
    }

    #[test]
    fn every_block_of_100_records_has_the_exact_level_mix() {
        let all = values(1_000, 11);
        for block in all.chunks(100) {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for v in block {
                *counts.entry(v["level"].as_str().unwrap()).or_default() += 1;
            }
            for (level, percent) in LEVEL_MIX {
                assert_eq!(counts.get(level.as_str()).copied().unwrap_or(0), percent);
            }
        }
    }

    #[test]
    fn timestamps_are_non_decreasing_and_span_roughly_the_window() {
        let opts = GenOptions {
            span: Duration::from_secs(3_600),
            ..options(2_000, 42, Format::Ndjson)
        };
        let text = output(&opts);
        let times: Vec<i64> = records(&text)
            .iter()
            .map(|r| {
                let ts = schema::parse_record(r).unwrap().timestamp;
                ts.as_nanos() / 1_000_000
            })
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        let start = opts.start.as_nanos() / 1_000_000;
        let end = start + 3_600_000;
        assert!(times[0] >= start && times[0] < start + 2_000);
        assert!(times[times.len() - 1] < end && times[times.len() - 1] > end - 4_000);
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        for v in values(200, 4) {
            let ts = v["timestamp"].as_str().unwrap();
            assert_eq!(ts.len(), 24, "{ts}");
            assert!(ts.starts_with("2026-11-2") && ts.ends_with('Z'), "{ts}");
            assert_eq!(&ts[19..20], ".");
            assert!(millis(ts) >= millis(DEFAULT_START));
        }
    }

    #[test]
    fn default_start_is_the_documented_instant() {
        let parsed = Timestamp::parse_rfc3339(DEFAULT_START).unwrap();
        assert_eq!(GenOptions::default().start, parsed);
        assert_eq!(parsed.to_rfc3339(), "2026-11-25T00:00:00.000000000Z");
    }

    #[test]
    fn a_window_beyond_2262_is_rejected() {
        let opts = GenOptions {
            span: Duration::from_secs(400 * 365 * 86_400),
            ..GenOptions::default()
        };
        assert!(matches!(
            generate(&opts, io::sink()),
            Err(GenError::SpanOutOfRange)
        ));
    }

    #[test]
    fn ids_have_the_documented_shapes() {
        let hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        for v in values(500, 8) {
            let trace = v["trace_id"].as_str().unwrap();
            assert!(trace.len() == 32 && hex(trace), "{trace}");
            let span = v["span_id"].as_str().unwrap();
            assert!(span.len() == 16 && hex(span), "{span}");
            let uuid = v["request_id"].as_str().unwrap();
            let groups: Vec<&str> = uuid.split('-').collect();
            assert_eq!(
                groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12]
            );
            assert!(groups.iter().all(|g| hex(g)), "{uuid}");
            assert!(groups[2].starts_with('4'), "{uuid}");
            assert!(
                matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
                "{uuid}"
            );
            let host = v["host"].as_str().unwrap();
            let service = v["service"].as_str().unwrap();
            assert!(host.starts_with(service), "{host}");
        }
    }

    #[test]
    fn some_records_share_a_trace_across_services() {
        let all = values(1_000, 6);
        let mut services_of: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for v in &all {
            services_of
                .entry(v["trace_id"].as_str().unwrap())
                .or_default()
                .insert(v["service"].as_str().unwrap());
        }
        assert!(services_of.values().any(|s| s.len() >= 2));
    }

    #[test]
    fn http_status_agrees_with_the_level() {
        let all = values(5_000, 42);
        let with_http = all.iter().filter(|v| v.get("http").is_some()).count();
        assert!(
            (2_500..4_500).contains(&with_http),
            "{with_http} of 5000 have http"
        );
        for v in &all {
            let Some(http) = v.get("http") else { continue };
            let status = http["status"].as_u64().unwrap();
            let level = v["level"].as_str().unwrap();
            match status {
                200..=399 => assert!(!matches!(level, "error" | "fatal"), "{v}"),
                400..=499 => assert_eq!(level, "warn", "{v}"),
                _ => assert!(matches!(level, "error" | "fatal"), "{v}"),
            }
            assert!(http["path"].as_str().unwrap().starts_with("/v1/"));
            assert!(http["duration_ms"].as_u64().is_some());
        }
    }

    #[test]
    fn error_records_carry_an_error_object_and_others_do_not() {
        for v in values(3_000, 42) {
            let severe = matches!(v["level"].as_str().unwrap(), "error" | "fatal");
            assert_eq!(v.get("error").is_some(), severe, "{v}");
            if severe {
                assert!(!v["error"]["type"].as_str().unwrap().is_empty(), "{v}");
                assert!(v["error"]["stack"].as_str().unwrap().contains('\n'), "{v}");
            }
        }
    }

    #[test]
    fn nested_user_and_db_objects_appear_and_agree_with_the_message() {
        let all = values(3_000, 42);
        let users: Vec<&Value> = all.iter().filter_map(|v| v.get("user")).collect();
        let dbs: Vec<&Value> = all.iter().filter_map(|v| v.get("db")).collect();
        assert!(users.len() > 150, "{} user objects", users.len());
        assert!(dbs.len() > 100, "{} db objects", dbs.len());
        for v in &all {
            let message = v["message"].as_str().unwrap();
            if let Some(user) = v.get("user") {
                let id = user["id"].as_str().unwrap();
                assert!(id.starts_with("usr_") && user["region"].is_string());
                if message.contains("usr_") {
                    assert!(message.contains(id), "{v}");
                }
            }
        }
    }

    #[test]
    fn some_records_contain_non_ascii_text() {
        let all = values(5_000, 42);
        let non_ascii = all
            .iter()
            .filter(|v| !v["message"].as_str().unwrap().is_ascii())
            .count();
        assert!((100..=500).contains(&non_ascii), "{non_ascii} of 5000");
    }

    #[test]
    fn some_messages_need_json_escaping() {
        let text = output(&options(5_000, 42, Format::Ndjson));
        for escape in ["\\\"", "\\\\", "\\t"] {
            let hits = records(&text)
                .iter()
                .filter(|r| {
                    let message = r.split("\"message\":").nth(1).unwrap();
                    message.split(",\"host\":").next().unwrap().contains(escape)
                })
                .count();
            assert!(hits > 0, "no message contains {escape}");
        }
    }

    #[test]
    fn average_record_is_between_200_and_400_bytes() {
        let text = output(&options(5_000, 42, Format::Ndjson));
        let average = (text.len() - 5_000) / 5_000;
        assert!((200..=400).contains(&average), "{average} bytes");
    }

    #[test]
    fn every_service_logs_at_every_level() {
        for service in SERVICES {
            for level in Level::ALL {
                assert!(
                    service.events.iter().any(|e| e.level == level),
                    "{} has no {level} event",
                    service.name
                );
            }
        }
    }

    #[test]
    fn every_catalog_entry_is_well_formed() {
        let draw = Draw {
            user: 12_345,
            order: 123_456,
            sku: 12_345,
            ms: 1,
            rows: 1,
            db_hundredths: 1,
            qty: 1,
            n: 1,
            retry: 1,
            hits: 1,
            amount_cents: 1,
            ip: 1,
            pick: u64::MAX,
            error_type: "SomeError",
        };
        let rendered = |template: &str| {
            let mut out = String::new();
            render(template, &draw, &mut out);
            assert!(
                !out.contains(['{', '}']),
                "unknown placeholder in {template:?}"
            );
            out
        };
        for service in SERVICES {
            assert!(
                rendered(service.stack).contains("SomeError"),
                "{}",
                service.name
            );
            for event in service.events {
                let prepared = Prepared::new(event);
                rendered(event.message);
                rendered(event.http);
                assert_eq!(
                    event.http.split_whitespace().count(),
                    usize::from(!prepared.method.is_empty()) * 2
                        + usize::from(prepared.status.is_some()),
                    "bad http spec {:?}",
                    event.http
                );
                assert_eq!(
                    event.level >= Level::Error,
                    !event.error.is_empty(),
                    "error type of {:?}",
                    event.message
                );
                if let Some(status) = prepared.status {
                    let want = match event.level {
                        Level::Warn => (200..500).contains(&status),
                        Level::Error | Level::Fatal => status >= 500,
                        _ => status < 400,
                    };
                    assert!(
                        want,
                        "status {status} at {} in {:?}",
                        event.level, event.message
                    );
                }
            }
        }
    }

    #[test]
    fn render_fills_known_placeholders_and_keeps_unknown_ones() {
        let draw = Draw {
            user: 12_345,
            order: 100_001,
            sku: 10_000,
            ms: 7,
            rows: 3,
            db_hundredths: 1_205,
            qty: 2,
            n: 5,
            retry: 1,
            hits: 0,
            amount_cents: 4_999,
            ip: 0x0000_2a00,
            pick: 0,
            error_type: "Boom",
        };
        let mut out = String::new();
        render(
            "{user} {order} {amount} {db_ms}ms {ip} {nope} {unclosed",
            &draw,
            &mut out,
        );
        assert_eq!(
            out,
            "usr_12345 ORD-100001 49.99 12.05ms 203.0.113.43 {nope} {unclosed"
        );
    }

    #[test]
    fn broken_pipe_is_recognised() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let e = generate(&options(10_000, 1, Format::Ndjson), Closed).unwrap_err();
        assert!(e.is_broken_pipe(), "{e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn any_seed_and_window_gives_valid_ordered_records(
            seed in any::<u64>(),
            records in 0_u64..300,
            span_secs in 0_u64..200_000,
        ) {
            let opts = GenOptions {
                records,
                seed,
                format: Format::Ndjson,
                span: Duration::from_secs(span_secs),
                ..GenOptions::default()
            };
            let text = output(&opts);
            let start = opts.start.as_nanos();
            let end = start + i64::try_from(span_secs).unwrap() * NANOS_PER_SEC;
            let mut last = 0;
            for line in text.lines() {
                let record = schema::parse_record(line)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let t = record.timestamp.as_nanos();
                prop_assert!(t >= last);
                prop_assert!(start <= t && t <= end);
                last = t;
            }
            prop_assert_eq!(text.lines().count() as u64, records);
        }
    }
}
