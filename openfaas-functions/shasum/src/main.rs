//! `fn-shasum`: an HTTP function by default; `fn-shasum --stdin` is the classic-watchdog mode
//! (digest of stdin on stdout, one process per request).

use std::io::Write;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => fn_common::run(fn_shasum::handle),
        [flag] if flag == "--stdin" => {
            let digest = fn_shasum::sha256_hex_reader(std::io::stdin().lock())?;
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{digest}")?;
            stdout.flush()?;
            Ok(())
        }
        _ => {
            eprintln!(
                "usage: fn-shasum            serve HTTP on $PORT (default 8080)\n       fn-shasum --stdin    print the SHA-256 of stdin"
            );
            std::process::exit(2);
        }
    }
}
