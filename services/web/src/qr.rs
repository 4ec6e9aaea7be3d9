//! QR codes out (SVG and PNG of a Digital Link URI) and in (decoding a photo of one).

use std::io::Cursor;

use image::{GrayImage, ImageFormat, ImageReader, Luma};
use qrcode::render::svg;
use qrcode::{Color, EcLevel, QrCode};

/// Pixels per module in PNGs: large enough for a phone camera at arm's length.
const PNG_MODULE_PX: u32 = 8;
/// Quiet zone in modules, as ISO/IEC 18004 requires.
const QUIET_ZONE: u32 = 4;
/// Photos larger than this on either side are refused before decoding.
const MAX_SIDE: u32 = 10_000;
/// Pixels a photo may have, checked against its header before anything is decoded: 16 MP
/// takes a 12 MP phone photo (4032 x 3024) with room to spare. A 157-byte PNG can claim
/// 10000 x 10000 RGBA, which the decoder would allocate (400 MB) before finding no data.
pub const MAX_PIXELS: u64 = 16_000_000;
/// Memory the decoder may allocate for one photo: 16 MP of 8-byte pixels (RGBA, 16 bits).
pub const MAX_DECODE_ALLOC: u64 = MAX_PIXELS * 8;
/// Decoding works on a copy scaled down to at most this many pixels on the longer side:
/// a QR code that fills a tenth of a phone photo still has ~8 pixels per module.
const DECODE_SIDE: u32 = 1600;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QrError {
    #[error("the text is too long for a QR code")]
    TooLong,
    #[error("the upload is not an image we can read (PNG or JPEG): {0}")]
    Unreadable(String),
    #[error("no QR code was found in the image; hold the camera closer and keep the code flat")]
    NoCode,
    #[error("a QR code was found but could not be read: {0}")]
    Damaged(String),
    #[error(
        "the photo is {width} x {height} pixels, more than the {MAX_PIXELS} this service decodes; \
         take it at a lower resolution"
    )]
    TooManyPixels { width: u32, height: u32 },
}

fn encode(text: &str) -> Result<QrCode, QrError> {
    // Level M survives a creased or partly covered label and keeps the code small.
    QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).map_err(|_| QrError::TooLong)
}

/// The QR code of `text` as an SVG document.
pub fn svg(text: &str) -> Result<String, QrError> {
    Ok(encode(text)?
        .render::<svg::Color>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build())
}

/// The modules of `text`'s QR code as an SVG `<path>` drawn at (x, y), `module` units per
/// module, without a quiet zone; returns the path and its side length.
pub fn svg_path(text: &str, x: f64, y: f64, module: f64) -> Result<(String, f64), QrError> {
    let code = encode(text)?;
    let w = code.width();
    let mut d = String::new();
    for (i, c) in code.to_colors().iter().enumerate() {
        if *c == Color::Dark {
            let (cx, cy) = ((i % w) as f64, (i / w) as f64);
            d.push_str(&format!(
                "M{:.2} {:.2}h{m}v{m}h-{m}z",
                x + cx * module,
                y + cy * module,
                m = module
            ));
        }
    }
    Ok((
        format!("<path d=\"{d}\" fill=\"#000\"/>"),
        w as f64 * module,
    ))
}

/// The QR code of `text` as a PNG, black on white with a quiet zone.
pub fn png(text: &str) -> Result<Vec<u8>, QrError> {
    let code = encode(text)?;
    let w = code.width() as u32;
    let side = (w + 2 * QUIET_ZONE) * PNG_MODULE_PX;
    let colors = code.to_colors();
    let img = GrayImage::from_fn(side, side, |px, py| {
        let (mx, my) = (px / PNG_MODULE_PX, py / PNG_MODULE_PX);
        let dark = mx >= QUIET_ZONE
            && my >= QUIET_ZONE
            && mx - QUIET_ZONE < w
            && my - QUIET_ZONE < w
            && colors[((my - QUIET_ZONE) * w + (mx - QUIET_ZONE)) as usize] == Color::Dark;
        Luma([if dark { 0 } else { 255 }])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png)
        // Invariant: encoding an in-memory grey image to PNG in memory cannot fail.
        .expect("PNG encoding in memory");
    Ok(out.into_inner())
}

/// Every QR code readable in a PNG or JPEG photo, as text.
pub fn decode(bytes: &[u8]) -> Result<Vec<String>, QrError> {
    let reader = || {
        let r = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| QrError::Unreadable(e.to_string()))?;
        match r.format() {
            Some(_) => Ok(r),
            None => Err(QrError::Unreadable("unknown image format".into())),
        }
    };
    // The header alone, against the pixel budget, before the decoder allocates anything.
    let (width, height) = reader()?
        .into_dimensions()
        .map_err(|e| QrError::Unreadable(e.to_string()))?;
    if u64::from(width) * u64::from(height) > MAX_PIXELS || width.max(height) > MAX_SIDE {
        return Err(QrError::TooManyPixels { width, height });
    }
    let mut reader = reader()?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| QrError::Unreadable(e.to_string()))?;
    let img = if img.width().max(img.height()) > DECODE_SIDE {
        img.thumbnail(DECODE_SIDE, DECODE_SIDE)
    } else {
        img
    };
    let grey = img.to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare_from_greyscale(
        grey.width() as usize,
        grey.height() as usize,
        |x, y| grey.get_pixel(x as u32, y as u32).0[0],
    );
    let grids = prepared.detect_grids();
    if grids.is_empty() {
        return Err(QrError::NoCode);
    }
    let mut out = Vec::new();
    let mut last_err = None;
    for g in grids {
        match g.decode() {
            Ok((_, text)) => out.push(text),
            Err(e) => last_err = Some(e.to_string()),
        }
    }
    if out.is_empty() {
        return Err(QrError::Damaged(last_err.unwrap_or_default()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const URI: &str = "https://rx.example/01/10614141073464/10/L1/21/1001?17=310630";

    #[test]
    fn png_round_trips_through_an_independent_decoder() {
        let png = png(URI).unwrap();
        assert_eq!(decode(&png).unwrap(), vec![URI.to_string()]);
    }

    #[test]
    fn bad_images_get_clear_errors() {
        assert!(matches!(
            decode(b"not an image"),
            Err(QrError::Unreadable(_))
        ));
        let blank = GrayImage::from_pixel(64, 64, Luma([255]));
        let mut out = Cursor::new(Vec::new());
        blank.write_to(&mut out, ImageFormat::Png).unwrap();
        assert_eq!(decode(&out.into_inner()), Err(QrError::NoCode));
        // A truncated PNG: the header is right, the data is not.
        let mut cut = png(URI).unwrap();
        cut.truncate(100);
        assert!(matches!(decode(&cut), Err(QrError::Unreadable(_))));
    }

    /// A valid PNG claiming `w` x `h` RGBA pixels, with no image data at all.
    pub(crate) fn png_bomb(w: u32, h: u32) -> Vec<u8> {
        fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let start = out.len();
            out.extend_from_slice(kind);
            out.extend_from_slice(data);
            let crc = crc32fast::hash(&out[start..]);
            out.extend_from_slice(&crc.to_be_bytes());
        }
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 6, 0, 0, 0]); // 8-bit RGBA
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        chunk(&mut out, b"IHDR", &ihdr);
        // An empty zlib stream: the decoder reads the header, allocates, then runs dry.
        chunk(
            &mut out,
            b"IDAT",
            &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
        );
        chunk(&mut out, b"IEND", &[]);
        out
    }

    #[test]
    fn a_header_over_the_pixel_budget_is_refused_before_decoding() {
        let bomb = png_bomb(10_000, 10_000);
        assert!(bomb.len() < 100, "{}", bomb.len());
        assert_eq!(
            decode(&bomb),
            Err(QrError::TooManyPixels {
                width: 10_000,
                height: 10_000
            })
        );
        // Within the budget the header passes and the missing data is what fails.
        assert!(matches!(
            decode(&png_bomb(4000, 3000)),
            Err(QrError::Unreadable(_))
        ));
    }

    #[test]
    fn svg_is_a_document_with_a_path() {
        let s = svg(URI).unwrap();
        assert!(s.starts_with("<?xml") && s.contains("<svg"), "{s}");
        let (p, side) = svg_path(URI, 0.0, 0.0, 1.0).unwrap();
        assert!(p.starts_with("<path d=\"M") && side >= 21.0);
    }
}
