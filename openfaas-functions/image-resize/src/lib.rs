//! `fn-image-resize`: resizes a JPEG or PNG (GIRAFF's image pre-processing step, which feeds
//! 224×224 images to the classifier).
//!
//! - Body: the image bytes (the format is detected from the content, not the `Content-Type`).
//! - Query `width`, `height`: the exact output size, each 1..=8192, default 224 (the aspect ratio
//!   is not preserved, as in the pre-processing step).
//! - Query `format=png|jpeg` (`jpg` accepted): the output format, default the input's.
//! - Answers the resized image with `Content-Type: image/png` or `image/jpeg`; a body that is not
//!   a decodable JPEG/PNG answers 400 saying why; bad parameters answer 400 naming them.
//!
//! Decoding is bounded (at most 16 384 px per side and 512 MiB of pixel buffers) so a small
//! compressed "image bomb" cannot exhaust the replica's memory. The handler is CPU-bound and
//! runs on the blocking pool (see `fn_common::run`).

use std::io::Cursor;

use fn_common::{FnError, HeaderValue, Request, Response, StatusCode, header};
use image::imageops::FilterType;
use image::{DynamicImage, ImageFormat, ImageReader, Limits};

/// Output size when `width`/`height` are absent.
pub const DEFAULT_SIDE: u32 = 224;
/// Largest accepted output side.
pub const MAX_SIDE: u32 = 8192;
/// Largest accepted input side.
pub const MAX_INPUT_SIDE: u32 = 16_384;
/// Largest pixel buffer the decoder may allocate.
pub const MAX_DECODE_BYTES: u64 = 512 * 1024 * 1024;

/// The two formats this function reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Png,
    Jpeg,
}

impl Format {
    fn parse(raw: &str) -> Result<Self, FnError> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "png" => Ok(Self::Png),
            "jpeg" | "jpg" => Ok(Self::Jpeg),
            _ => Err(FnError::invalid_param(
                "format",
                format!("{raw:?}: expected png or jpeg"),
            )),
        }
    }

    fn image_format(self) -> ImageFormat {
        match self {
            Self::Png => ImageFormat::Png,
            Self::Jpeg => ImageFormat::Jpeg,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
        }
    }
}

/// What the query asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub width: u32,
    pub height: u32,
    /// `None`: the input's format.
    pub format: Option<Format>,
}

impl Params {
    pub fn from_request(req: &Request) -> Result<Self, FnError> {
        Ok(Self {
            width: side(req, "width")?,
            height: side(req, "height")?,
            format: req
                .query_param("format")
                .map(|raw| Format::parse(&raw))
                .transpose()?,
        })
    }
}

fn side(req: &Request, name: &str) -> Result<u32, FnError> {
    let value = req.parse_query::<u32>(name)?.unwrap_or(DEFAULT_SIDE);
    if !(1..=MAX_SIDE).contains(&value) {
        return Err(FnError::invalid_param(
            name,
            format!("{value}: must be between 1 and {MAX_SIDE}"),
        ));
    }
    Ok(value)
}

/// Decodes `bytes` (JPEG or PNG), resizes to exactly `params`' size and encodes it.
pub fn resize(bytes: &[u8], params: Params) -> Result<(Format, Vec<u8>), FnError> {
    if bytes.is_empty() {
        return Err(FnError::bad_request(
            "empty body: send a JPEG or PNG image as the request body",
        ));
    }
    let input = match image::guess_format(bytes) {
        Ok(ImageFormat::Png) => Format::Png,
        Ok(ImageFormat::Jpeg) => Format::Jpeg,
        Ok(other) => {
            return Err(FnError::bad_request(format!(
                "unsupported image format {other:?}: send a JPEG or PNG"
            )));
        }
        Err(_) => {
            return Err(FnError::bad_request(
                "the body is not an image: expected JPEG or PNG data",
            ));
        }
    };
    let mut reader = ImageReader::with_format(Cursor::new(bytes), input.image_format());
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_INPUT_SIDE);
    limits.max_image_height = Some(MAX_INPUT_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let image = reader.decode().map_err(|e| {
        FnError::bad_request(format!(
            "could not decode the {} image: {e}",
            input.content_type()
        ))
    })?;

    let resized = image.resize_exact(params.width, params.height, FilterType::Triangle);
    let output = params.format.unwrap_or(input);
    // JPEG has no alpha channel: flatten to RGB (or keep grey) before encoding.
    let resized = match (output, &resized) {
        (Format::Jpeg, DynamicImage::ImageLuma8(_) | DynamicImage::ImageRgb8(_)) => resized,
        (Format::Jpeg, _) if !resized.color().has_color() => {
            DynamicImage::ImageLuma8(resized.to_luma8())
        }
        (Format::Jpeg, _) => DynamicImage::ImageRgb8(resized.to_rgb8()),
        (Format::Png, _) => resized,
    };
    let mut out = Cursor::new(Vec::new());
    resized
        .write_to(&mut out, output.image_format())
        .map_err(|e| {
            FnError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("encoding the {}: {e}", output.content_type()),
            )
        })?;
    Ok((output, out.into_inner()))
}

/// The handler.
pub fn handle(req: Request) -> Response {
    let result = Params::from_request(&req).and_then(|params| resize(&req.body, params));
    match result {
        Ok((format, bytes)) => Response::new(StatusCode::OK, bytes).with_header(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        ),
        Err(e) => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fn_common::Method;
    use image::{GenericImageView, Rgb, RgbImage, Rgba, RgbaImage};

    fn encode(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    fn gradient_png(width: u32, height: u32) -> Vec<u8> {
        let image = RgbaImage::from_fn(width, height, |x, y| {
            Rgba([(x * 255 / width) as u8, (y * 255 / height) as u8, 128, 200])
        });
        encode(DynamicImage::ImageRgba8(image), ImageFormat::Png)
    }

    fn red_jpeg(width: u32, height: u32) -> Vec<u8> {
        let image = RgbImage::from_pixel(width, height, Rgb([220, 20, 20]));
        encode(DynamicImage::ImageRgb8(image), ImageFormat::Jpeg)
    }

    fn decode(bytes: &[u8]) -> (ImageFormat, DynamicImage) {
        let format = image::guess_format(bytes).unwrap();
        (format, image::load_from_memory(bytes).unwrap())
    }

    #[test]
    fn a_png_is_resized_to_the_requested_size_and_stays_png() {
        let req = Request::new(Method::POST, "/?width=32&height=16", gradient_png(64, 48));
        let resp = handle(req);
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(resp.header(header::CONTENT_TYPE), Some("image/png"));
        let (format, image) = decode(&resp.body);
        assert_eq!(format, ImageFormat::Png);
        assert_eq!(image.dimensions(), (32, 16));
        // The gradient survives: left is darker in red than right.
        assert!(image.get_pixel(0, 8)[0] < image.get_pixel(31, 8)[0]);
    }

    #[test]
    fn the_default_size_is_224_by_224() {
        let resp = handle(Request::new(Method::POST, "/", red_jpeg(300, 100)));
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(resp.header(header::CONTENT_TYPE), Some("image/jpeg"));
        let (format, image) = decode(&resp.body);
        assert_eq!(format, ImageFormat::Jpeg);
        assert_eq!(image.dimensions(), (224, 224));
        let pixel = image.get_pixel(100, 100);
        assert!(pixel[0] > 180 && pixel[1] < 60, "{pixel:?}");
    }

    #[test]
    fn the_format_can_be_converted_both_ways() {
        let resp = handle(Request::new(
            Method::POST,
            "/?format=png&width=10&height=20",
            red_jpeg(40, 40),
        ));
        assert_eq!(resp.header(header::CONTENT_TYPE), Some("image/png"));
        let (format, image) = decode(&resp.body);
        assert_eq!((format, image.dimensions()), (ImageFormat::Png, (10, 20)));

        // An RGBA PNG becomes an RGB JPEG.
        let resp = handle(Request::new(
            Method::POST,
            "/?format=JPG&width=8&height=8",
            gradient_png(16, 16),
        ));
        assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
        assert_eq!(resp.header(header::CONTENT_TYPE), Some("image/jpeg"));
        let (format, image) = decode(&resp.body);
        assert_eq!((format, image.dimensions()), (ImageFormat::Jpeg, (8, 8)));
    }

    #[test]
    fn bodies_that_are_not_jpeg_or_png_answer_400_saying_so() {
        for (body, needle) in [
            (b"".to_vec(), "empty body"),
            (b"hello, I am text".to_vec(), "not an image"),
            (b"GIF89a\x01\x00\x01\x00".to_vec(), "Gif"),
        ] {
            let resp = handle(Request::new(Method::POST, "/", body));
            assert_eq!(resp.status, StatusCode::BAD_REQUEST);
            let text = String::from_utf8_lossy(&resp.body).into_owned();
            assert!(text.contains(needle), "{text}");
        }
        let mut truncated = gradient_png(64, 64);
        truncated.truncate(60);
        let resp = handle(Request::new(Method::POST, "/", truncated));
        assert_eq!(resp.status, StatusCode::BAD_REQUEST);
        assert!(String::from_utf8_lossy(&resp.body).contains("could not decode"));
    }

    #[test]
    fn bad_parameters_answer_400_naming_them() {
        for (target, name) in [
            ("/?width=0", "`width`"),
            ("/?width=8193", "`width`"),
            ("/?height=tall", "`height`"),
            ("/?height=-1", "`height`"),
            ("/?format=gif", "`format`"),
        ] {
            let resp = handle(Request::new(Method::POST, target, gradient_png(4, 4)));
            assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{target}");
            let text = String::from_utf8_lossy(&resp.body).into_owned();
            assert!(text.contains(name), "{target}: {text}");
        }
    }
}
