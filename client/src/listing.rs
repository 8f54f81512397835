//! `ispy TARGET --list`: the servers a configuration points at, for a
//! person (a table) or a script (JSON Lines), then exit.

use std::io::{self, Write};

use ispyd_std::process::human_duration;
use serde_json::json;

use crate::servers::{Server, Servers, Status};

/// One row per address: live servers numbered as `connect N` numbers
/// them, then the others, unnumbered. Whole command lines: a row is as
/// long as it needs to be.
pub fn write_table(servers: &Servers, out: &mut dyn Write) -> io::Result<()> {
    let rows: Vec<Vec<String>> = rows(servers)
        .map(|(number, server)| {
            vec![
                number.map_or_else(|| "-".to_owned(), |n| n.to_string()),
                server
                    .pid
                    .map_or_else(|| "?".to_owned(), |pid| pid.to_string()),
                status(server).0.to_owned(),
                server
                    .uptime
                    .map_or_else(|| "-".to_owned(), |up| human_duration(up.as_secs_f64())),
                server.address.to_string(),
                match &server.status {
                    Status::Live => server.command.clone().unwrap_or_else(|| "-".to_owned()),
                    _ => status(server).1,
                },
            ]
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let header = ["#", "PID", "STATUS", "UPTIME", "ADDRESS", "COMMAND"];
    let right = [true, true, false, false, false, false];
    out.write_all(ispyd_core::table(&header, &right, &rows).as_bytes())
}

/// One JSON object per address, in the table's order.
pub fn write_json(servers: &Servers, host: &str, out: &mut dyn Write) -> io::Result<()> {
    for (number, server) in rows(servers) {
        let (status, reason) = status(server);
        let object = json!({
            "host": host,
            "number": number,
            "pid": server.pid,
            "address": server.address.to_string(),
            "status": status,
            "reason": (server.status != Status::Live).then_some(reason),
            "uptime_s": server.uptime.map(|up| up.as_secs_f64()),
            "command": server.command,
        });
        writeln!(out, "{object}")?;
    }
    Ok(())
}

fn rows(servers: &Servers) -> impl Iterator<Item = (Option<usize>, &Server)> {
    let live = servers
        .live()
        .iter()
        .enumerate()
        .map(|(i, s)| (Some(i + 1), s));
    live.chain(servers.others().iter().map(|s| (None, s)))
}

/// The status word and what it means.
fn status(server: &Server) -> (&'static str, String) {
    match &server.status {
        Status::Live => ("alive", "accepting connections".to_owned()),
        Status::Stale => (
            "stale",
            "nobody listening; left by a process that has gone".to_owned(),
        ),
        Status::Unusable(why) => ("unusable", why.clone()),
    }
}
