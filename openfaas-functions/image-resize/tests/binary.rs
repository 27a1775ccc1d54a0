//! Starts the real `fn-image-resize` binary with `PORT=0` and talks HTTP to it.

use std::io::Cursor;

use fn_common::testing::FnProcess;
use image::{DynamicImage, GenericImageView, ImageFormat, Rgb, RgbImage};

#[test]
fn the_binary_serves_health_and_resizes_a_png() {
    let proc = FnProcess::start(env!("CARGO_BIN_EXE_fn-image-resize"), &[]);
    assert_eq!(proc.request("GET", "/_/health", &[], b"").status, 200);

    let mut png = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(RgbImage::from_pixel(50, 30, Rgb([0, 90, 200])))
        .write_to(&mut png, ImageFormat::Png)
        .unwrap();
    let resp = proc.request(
        "POST",
        "/?width=25&height=15",
        &[("Content-Type", "image/png")],
        png.get_ref(),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("image/png"));
    let image = image::load_from_memory(&resp.body).unwrap();
    assert_eq!(image.dimensions(), (25, 15));

    let bad = proc.request("POST", "/", &[], b"not an image");
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("not an image"), "{}", bad.text());
}
