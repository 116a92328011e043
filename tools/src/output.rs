//! What every inspection command shares: the global `--format` and `--hex` flags, rendering of
//! keys and values, tables, JSON output, progress bars and exit codes.
//!
//! The JSON schemas of the commands are documented in `tools/README.md`. Rules common to all:
//! - `--format json` prints one pretty-printed JSON document per invocation; `--format jsonl`
//!   prints one compact JSON object per line, one line per item (entry, page, record, ...).
//! - Keys and values are JSON strings rendered like the text output: the UTF-8 text when the
//!   bytes are valid UTF-8 without control characters (and do not start with `0x`), otherwise
//!   `0x` followed by lowercase hex. `--hex` renders every key and value as hex, which is the way
//!   for scripts to get exact bytes.
//! - Errors go to stderr as `strata: <message>`; stdout then holds whatever was printed before.

use std::fmt::Display;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

/// Exit code: corruption was found.
pub const EXIT_CORRUPTION: u8 = 1;
/// Exit code: the command line is wrong (clap uses 2 for parse errors too).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: a file, key or keyspace does not exist.
pub const EXIT_NOT_FOUND: u8 = 3;
/// Exit code: anything else (I/O error, database locked, ...).
pub const EXIT_OTHER: u8 = 4;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// Human-readable tables.
    #[default]
    Text,
    /// One JSON document.
    Json,
    /// One JSON object per line.
    Jsonl,
}

/// Flags every inspection command accepts.
#[derive(Args, Debug, Clone, Default)]
pub struct GlobalArgs {
    /// Output format: human tables, one JSON document, or JSON lines (schemas: tools/README.md).
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Print every key and value as hex (`0x...`), even when printable.
    #[arg(long, global = true)]
    pub hex: bool,
}

/// A failed command: the exit code and what to tell the user (nothing when the output already
/// said it, e.g. a verify report listing problems).
#[derive(Debug)]
pub struct CliError {
    /// Process exit code.
    pub code: u8,
    /// The message for stderr.
    pub message: Option<String>,
}

/// Result of a command.
pub type CliResult<T = ()> = Result<T, CliError>;

impl CliError {
    /// An error with `code` and `message`.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: Some(message.into()),
        }
    }

    /// Exit with `code` without a further message.
    pub fn silent(code: u8) -> Self {
        CliError {
            code,
            message: None,
        }
    }

    /// Something named on the command line does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        CliError::new(EXIT_NOT_FOUND, message)
    }

    /// The command line is wrong in a way clap cannot tell.
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::new(EXIT_USAGE, message)
    }

    /// Any other failure.
    pub fn other(message: impl Into<String>) -> Self {
        CliError::new(EXIT_OTHER, message)
    }
}

impl From<strata::Error> for CliError {
    fn from(error: strata::Error) -> Self {
        use strata::Error as E;
        let code = match &error {
            E::Corruption { .. } | E::UnsupportedVersion { .. } => EXIT_CORRUPTION,
            E::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => EXIT_NOT_FOUND,
            E::KeyspaceNotFound(_) => EXIT_NOT_FOUND,
            E::InvalidArgument(_) | E::KeyTooLarge { .. } | E::ValueTooLarge { .. } => EXIT_USAGE,
            _ => EXIT_OTHER,
        };
        let message = match &error {
            E::Locked { path } => format!(
                "the database is in use: another process holds {} (close it first; read-only \
                 commands such as `strata wal dump`, `strata meta dump` and `strata db verify` \
                 work while it runs)",
                path.display()
            ),
            _ => error.to_string(),
        };
        CliError::new(code, message)
    }
}

impl From<strata::sstable::Error> for CliError {
    fn from(error: strata::sstable::Error) -> Self {
        CliError::from(strata::Error::from(error))
    }
}

/// Turns a command's result into the process exit code, printing the error message.
pub fn finish(result: CliResult) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if let Some(message) = &error.message {
                eprintln!("strata: {message}");
            }
            ExitCode::from(error.code)
        }
    }
}

/// Writes one line to stdout. A closed pipe (`strata ... | head`) ends the command quietly.
pub fn out(line: impl Display) -> CliResult {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").map_err(|e| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            CliError::silent(0)
        } else {
            CliError::other(format!("writing to stdout: {e}"))
        }
    })
}

/// Lowercase hex with a `0x` prefix.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("0x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The bytes as text when they are printable UTF-8 that cannot be mistaken for hex.
fn printable(bytes: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(bytes).ok()?;
    (!s.starts_with("0x") && s.chars().all(|c| !c.is_control())).then_some(s)
}

/// Parses a key given on the command line: UTF-8 as typed, or hex with `--key-hex` (an optional
/// `0x` prefix, an even number of hex digits).
pub fn parse_key(text: &str, key_hex: bool) -> CliResult<Vec<u8>> {
    if !key_hex {
        return Ok(text.as_bytes().to_vec());
    }
    let digits = text.strip_prefix("0x").unwrap_or(text);
    if !digits.len().is_multiple_of(2) {
        return Err(CliError::usage(format!(
            "--key-hex: {text:?} has an odd number of hex digits"
        )));
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            digits
                .get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| CliError::usage(format!("--key-hex: {text:?} is not hex")))
        })
        .collect()
}

/// Rewrites arrays of small integers (how serde encodes byte strings into JSON) into rendered
/// strings, everywhere inside `value`. `include_empty`: `[]` too (when every array in `value` is
/// a byte string).
pub fn render_byte_arrays(ctx: &Ctx, value: &mut Value, include_empty: bool) {
    match value {
        Value::Array(items)
            if (include_empty || !items.is_empty())
                && items.iter().all(|v| v.as_u64().is_some_and(|n| n < 256)) =>
        {
            let bytes: Vec<u8> = items
                .iter()
                .filter_map(|v| v.as_u64().and_then(|n| u8::try_from(n).ok()))
                .collect();
            *value = Value::String(ctx.bytes(&bytes));
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| render_byte_arrays(ctx, v, include_empty)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|v| render_byte_arrays(ctx, v, include_empty)),
        _ => {}
    }
}

/// Renders a JSON value compactly for a table cell: strings without quotes, objects as
/// `key=value` pairs (nested keys joined with dots).
pub fn cell_text(value: &Value) -> String {
    fn walk(prefix: &str, value: &Value, parts: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let name = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&name, v, parts);
                }
            }
            other => {
                let shown = match other {
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                };
                parts.push(if prefix.is_empty() {
                    shown
                } else {
                    format!("{prefix}={shown}")
                });
            }
        }
    }
    let mut parts = Vec::new();
    walk("", value, &mut parts);
    parts.join(" ")
}

/// Rendering context of one invocation.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    /// The output format.
    pub format: Format,
    /// Force hex for keys and values.
    pub hex: bool,
}

impl Ctx {
    /// The context the global flags ask for.
    pub fn new(args: &GlobalArgs) -> Self {
        Ctx {
            format: args.format,
            hex: args.hex,
        }
    }

    /// True for human output.
    pub fn text(&self) -> bool {
        self.format == Format::Text
    }

    /// Renders a key or value: UTF-8 when printable, otherwise (or with `--hex`) hex.
    pub fn bytes(&self, bytes: &[u8]) -> String {
        if !self.hex {
            if let Some(s) = printable(bytes) {
                return s.to_string();
            }
        }
        hex(bytes)
    }

    /// Prints a JSON document (`--format json`) pretty, or one line of JSON lines.
    pub fn json(&self, value: &Value) -> CliResult {
        let text = if self.format == Format::Json {
            serde_json::to_string_pretty(value)
        } else {
            serde_json::to_string(value)
        };
        out(text.map_err(|e| CliError::other(format!("JSON encoding: {e}")))?)
    }

    /// A progress bar over `total` units (bytes when `bytes`), drawn on stderr only when stderr
    /// is a terminal and the output is text; otherwise a no-op.
    pub fn progress(&self, total: u64, bytes: bool, message: &str) -> Progress {
        if !self.text() || !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let template = if bytes {
            "{msg} [{bar:40}] {bytes}/{total_bytes} ({eta})"
        } else {
            "{msg} [{bar:40}] {pos}/{len} ({eta})"
        };
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(message.to_string());
        Progress(Some(bar))
    }
}

impl Ctx {
    /// A spinner for work of unknown length, under the same conditions as [`Ctx::progress`].
    pub fn spinner(&self, message: &str) -> Progress {
        if !self.text() || !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = ProgressBar::new_spinner();
        bar.set_message(message.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(100));
        Progress(Some(bar))
    }
}

/// A progress bar, or nothing (see [`Ctx::progress`]). Cleared when dropped.
pub struct Progress(Option<ProgressBar>);

impl Progress {
    /// Sets the position.
    pub fn set(&self, done: u64) {
        if let Some(bar) = &self.0 {
            bar.set_position(done);
        }
    }

    /// Sets the total.
    pub fn set_length(&self, total: u64) {
        if let Some(bar) = &self.0 {
            bar.set_length(total);
        }
    }

    /// Advances by `n`.
    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(n);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// A table in the house style with a header row.
pub fn table<S: Display>(header: impl IntoIterator<Item = S>) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(header.into_iter().map(|h| Cell::new(h)));
    table
}

/// A right-aligned cell, for numbers.
pub fn num(value: impl Display) -> Cell {
    Cell::new(value).set_alignment(CellAlignment::Right)
}

/// A byte count for humans: `512 B`, `1.5 KiB`, `3.2 MiB`, ...
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Fails with "not found" (exit code 3) if `path` does not exist.
pub fn check_exists(path: &std::path::Path) -> CliResult {
    if path.exists() {
        Ok(())
    } else {
        Err(CliError::not_found(format!(
            "{}: no such file or directory",
            path.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_render_as_text_or_hex() {
        let ctx = Ctx {
            format: Format::Text,
            hex: false,
        };
        assert_eq!(ctx.bytes(b"alice"), "alice");
        assert_eq!(ctx.bytes(&[0, 1, 0xff]), "0x0001ff");
        assert_eq!(
            ctx.bytes(b"0x41"),
            "0x30783431",
            "text that looks like hex is hexed"
        );
        assert_eq!(ctx.bytes(b"a\nb"), "0x610a62");
        let hexed = Ctx { hex: true, ..ctx };
        assert_eq!(hexed.bytes(b"alice"), "0x616c696365");
    }

    #[test]
    fn keys_parse_from_hex() {
        assert_eq!(parse_key("0x00ff", true).unwrap(), vec![0, 255]);
        assert_eq!(parse_key("41", true).unwrap(), b"A".to_vec());
        assert_eq!(parse_key("0x", true).unwrap(), Vec::<u8>::new());
        assert_eq!(parse_key("abc", true).unwrap_err().code, EXIT_USAGE);
        assert_eq!(parse_key("zz", true).unwrap_err().code, EXIT_USAGE);
        assert_eq!(parse_key("zz", false).unwrap(), b"zz".to_vec());
    }
}
