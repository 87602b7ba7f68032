//! The render's geometry (a table against imgproxy's rules) and real renders of generated images
//! in every format, with a table of sources refused.

use image::{GenericImageView, ImageEncoder, Rgb, RgbImage, Rgba, RgbaImage};

use super::*;
use crate::storage::render::params::{Format, Resize, Transform};

fn t(width: Option<u32>, height: Option<u32>, resize: Resize) -> Transform {
    Transform {
        width,
        height,
        resize,
        ..Transform::default()
    }
}

#[test]
fn geometry_follows_imgproxy_without_enlarging() {
    use Resize::*;
    for (src, tr, size, crop) in [
        ((400, 200), t(None, None, Cover), (400, 200), false),
        ((400, 200), t(Some(100), None, Cover), (100, 50), false),
        ((400, 200), t(None, Some(50), Fill), (100, 50), false),
        ((400, 200), t(Some(100), Some(100), Cover), (100, 100), true),
        (
            (400, 200),
            t(Some(100), Some(100), Contain),
            (100, 50),
            false,
        ),
        ((400, 200), t(Some(100), Some(100), Fill), (100, 100), false),
        // Never enlarged: a small image keeps its size; cover still crops it to the box.
        ((50, 80), t(Some(100), Some(100), Cover), (50, 80), true),
        ((400, 50), t(Some(100), Some(100), Cover), (100, 50), true),
        ((50, 80), t(Some(100), None, Cover), (50, 80), false),
        ((50, 80), t(Some(100), Some(40), Fill), (50, 40), false),
        ((50, 80), t(Some(200), Some(200), Contain), (50, 80), false),
        // Rounding never reaches zero.
        ((2000, 1), t(Some(10), None, Cover), (10, 1), false),
    ] {
        assert_eq!(geometry(src, &tr), Fit { size, crop }, "{src:?} {}", tr);
    }
}

fn photo(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| Rgb([(x % 256) as u8, (y % 256) as u8, 128]))
}

fn encoded(kind: ImageKind, w: u32, h: u32) -> Vec<u8> {
    let img = photo(w, h);
    let mut buf = Vec::new();
    match kind {
        ImageKind::Png => PngEncoder::new(&mut buf)
            .write_image(&img, w, h, ExtendedColorType::Rgb8)
            .unwrap(),
        ImageKind::Jpeg => JpegEncoder::new_with_quality(&mut buf, 90)
            .write_image(&img, w, h, ExtendedColorType::Rgb8)
            .unwrap(),
        ImageKind::Gif | ImageKind::Webp => {
            buf = encode(&img, w, h, ExtendedColorType::Rgb8, kind, 90).unwrap()
        }
    }
    buf
}

fn decoded(bytes: &[u8]) -> DynamicImage {
    image::load_from_memory(bytes).unwrap()
}

#[test]
fn renders_every_format_to_the_asked_size() {
    for kind in [
        ImageKind::Jpeg,
        ImageKind::Png,
        ImageKind::Webp,
        ImageKind::Gif,
    ] {
        let src = encoded(kind, 320, 240);
        assert_eq!(ImageKind::sniff(&src), Some(kind));
        let r = render(&src, &t(Some(64), Some(64), Resize::Cover), None).unwrap();
        assert_eq!((r.kind, r.width, r.height), (kind, 64, 64), "{kind:?}");
        assert_eq!(ImageKind::sniff(&r.bytes), Some(kind));
        assert_eq!(decoded(&r.bytes).dimensions(), (64, 64));
        let r = render(
            &src,
            &t(Some(100), None, Resize::Cover),
            Some(ImageKind::Webp),
        )
        .unwrap();
        assert_eq!(ImageKind::sniff(&r.bytes), Some(ImageKind::Webp));
        assert_eq!(decoded(&r.bytes).dimensions(), (100, 75));
    }
}

#[test]
fn quality_changes_jpeg_and_webp_sizes() {
    let src = encoded(ImageKind::Png, 300, 300);
    for kind in [ImageKind::Jpeg, ImageKind::Webp] {
        let at = |q| {
            let tr = Transform {
                quality: Some(q),
                format: Format::Origin,
                ..Transform::default()
            };
            render(&src, &tr, Some(kind)).unwrap().bytes.len()
        };
        assert!(at(20) < at(100), "{kind:?}");
    }
}

#[test]
fn alpha_is_kept_in_png_and_flattened_on_white_in_jpeg() {
    let img = RgbaImage::from_pixel(20, 20, Rgba([0, 0, 0, 0]));
    let mut src = Vec::new();
    PngEncoder::new(&mut src)
        .write_image(&img, 20, 20, ExtendedColorType::Rgba8)
        .unwrap();
    let png = render(&src, &t(Some(10), None, Resize::Cover), None).unwrap();
    assert_eq!(decoded(&png.bytes).to_rgba8().get_pixel(5, 5)[3], 0);
    let jpeg = render(&src, &Transform::default(), Some(ImageKind::Jpeg)).unwrap();
    let p = *decoded(&jpeg.bytes).to_rgb8().get_pixel(5, 5);
    assert!(p.0.iter().all(|c| *c > 240), "{p:?}");
}

#[test]
fn output_follows_format_then_accept() {
    use ImageKind::*;
    assert_eq!(output_kind(Png, Format::Auto, true), Webp);
    assert_eq!(output_kind(Png, Format::Auto, false), Png);
    assert_eq!(output_kind(Jpeg, Format::Origin, true), Jpeg);
    assert_eq!(output_kind(Gif, Format::Webp, false), Webp);
}

/// A PNG whose header claims `w`×`h`, cut two bytes into its pixels (refused before they are read
/// when too large, or when they are read otherwise).
fn png_header(w: u32, h: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for b in bytes {
            crc ^= *b as u32;
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for chunk in [ihdr, b"IDAT\x78\x9c".to_vec()] {
        out.extend((chunk.len() as u32 - 4).to_be_bytes());
        out.extend(&chunk);
        out.extend(crc32(&chunk).to_be_bytes());
    }
    out
}

#[test]
fn bad_sources_are_refused() {
    let png = encoded(ImageKind::Png, 40, 40);
    let any = Transform::default();
    for (what, bytes, want) in [
        ("text", b"hello teachers".to_vec(), PixelError::Unsupported),
        ("empty", Vec::new(), PixelError::Unsupported),
        ("pdf", b"%PDF-1.4 ...".to_vec(), PixelError::Unsupported),
        (
            "svg",
            b"<svg xmlns='http://www.w3.org/2000/svg'/>".to_vec(),
            PixelError::Unsupported,
        ),
        (
            "bmp (not a format doska renders)",
            b"BM\x00\x00\x00\x00\x00\x00\x00\x00".to_vec(),
            PixelError::Unsupported,
        ),
        (
            "a cut PNG",
            png[..png.len() / 2].to_vec(),
            PixelError::Unsupported,
        ),
        (
            "a PNG header only",
            png_header(40, 40),
            PixelError::Unsupported,
        ),
        (
            "60 megapixels",
            png_header(10_000, 6_000),
            PixelError::TooLarge { pixels: true },
        ),
        (
            "over 25 MB",
            vec![0u8; MAX_SOURCE_BYTES as usize + 1],
            PixelError::TooLarge { pixels: false },
        ),
    ] {
        assert_eq!(render(&bytes, &any, None).unwrap_err(), want, "{what}");
    }
}
