//! `fn-image-resize`: see the library docs.

fn main() -> anyhow::Result<()> {
    fn_common::run(fn_image_resize::handle)
}
