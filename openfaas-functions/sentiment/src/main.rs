//! `fn-sentiment`: see the library docs.

fn main() -> anyhow::Result<()> {
    fn_common::run(fn_sentiment::handle)
}
