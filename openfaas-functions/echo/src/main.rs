//! `fn-echo`: see the library docs.

fn main() -> anyhow::Result<()> {
    let identity = fn_echo::Identity::from_env();
    fn_common::run_async(move |req| fn_echo::handle(identity.clone(), req))
}
