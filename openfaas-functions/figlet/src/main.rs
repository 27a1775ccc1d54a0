//! `fn-figlet`: see the library docs.

fn main() -> anyhow::Result<()> {
    let banner = fn_figlet::Banner::standard()?;
    fn_common::run(move |req| banner.handle(req))
}
