//! The image render's CPU work, pure and blocking (run it off the async runtime): recognise the
//! source's format by its bytes, check its size before decoding, decode (turned upright by its
//! EXIF orientation, as imgproxy does), resize with `fast_image_resize` the way imgproxy fits an
//! image (never enlarging), and encode as JPEG, PNG, GIF (first frame) or WebP. Rejects what is not
//! a JPEG, PNG, WebP or GIF image, or does not decode ([`PixelError::Unsupported`]), and sources
//! over [`MAX_SOURCE_BYTES`] or [`MAX_SOURCE_PIXELS`] ([`PixelError::TooLarge`]).

use std::io::Cursor;

use fast_image_resize::{self as fir, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{
    DynamicImage, ExtendedColorType, ImageDecoder, ImageEncoder, ImageFormat, ImageReader,
    codecs::{gif::GifEncoder, jpeg::JpegEncoder, png::PngEncoder},
};

use super::params::{Format, Resize, Transform};

/// The largest source file rendered (Supabase's documented limit for image transformations).
pub const MAX_SOURCE_BYTES: u64 = 25_000_000;
/// The most source pixels rendered (Supabase's documented 50 megapixels).
pub const MAX_SOURCE_PIXELS: u64 = 50_000_000;

/// A format doska reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    Jpeg,
    Png,
    Webp,
    Gif,
}

impl ImageKind {
    /// The kind these bytes start like, if it is one doska renders.
    pub fn sniff(bytes: &[u8]) -> Option<ImageKind> {
        match image::guess_format(bytes).ok()? {
            ImageFormat::Jpeg => Some(ImageKind::Jpeg),
            ImageFormat::Png => Some(ImageKind::Png),
            ImageFormat::WebP => Some(ImageKind::Webp),
            ImageFormat::Gif => Some(ImageKind::Gif),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ImageKind::Jpeg => "image/jpeg",
            ImageKind::Png => "image/png",
            ImageKind::Webp => "image/webp",
            ImageKind::Gif => "image/gif",
        }
    }

    fn format(self) -> ImageFormat {
        match self {
            ImageKind::Jpeg => ImageFormat::Jpeg,
            ImageKind::Png => ImageFormat::Png,
            ImageKind::Webp => ImageFormat::WebP,
            ImageKind::Gif => ImageFormat::Gif,
        }
    }
}

/// Why a source is not rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PixelError {
    /// Not an image doska renders, or one that does not decode.
    #[error("The source image is invalid or unsupported for rendering")]
    Unsupported,
    /// Over [`MAX_SOURCE_BYTES`] (`pixels: false`) or [`MAX_SOURCE_PIXELS`].
    #[error("{}", if *.pixels { "The source image resolution is too large to process" } else { "The source image file is too large to process" })]
    TooLarge { pixels: bool },
}

/// A rendered image.
#[derive(Debug)]
pub struct Rendered {
    pub bytes: Vec<u8>,
    pub kind: ImageKind,
    pub width: u32,
    pub height: u32,
}

/// The output format for a source of `source` kind: WebP when asked (`format=webp`) or when the
/// format is left to the client's `Accept` and it takes WebP; the source's otherwise.
pub fn output_kind(source: ImageKind, format: Format, accepts_webp: bool) -> ImageKind {
    match format {
        Format::Webp => ImageKind::Webp,
        Format::Auto if accepts_webp => ImageKind::Webp,
        Format::Auto | Format::Origin => source,
    }
}

/// Renders `bytes` as `t` asks, in `out` (or the source's kind when `None`).
pub fn render(bytes: &[u8], t: &Transform, out: Option<ImageKind>) -> Result<Rendered, PixelError> {
    if bytes.len() as u64 > MAX_SOURCE_BYTES {
        return Err(PixelError::TooLarge { pixels: false });
    }
    let source = ImageKind::sniff(bytes).ok_or(PixelError::Unsupported)?;
    let out = out.unwrap_or(source);
    let reader = || {
        let mut r = ImageReader::with_format(Cursor::new(bytes), source.format());
        let mut limits = image::Limits::default();
        limits.max_alloc = Some(MAX_SOURCE_PIXELS * 4 + (64 << 20));
        r.limits(limits);
        r
    };
    let (w, h) = reader()
        .into_dimensions()
        .map_err(|_| PixelError::Unsupported)?;
    if w as u64 * h as u64 > MAX_SOURCE_PIXELS {
        return Err(PixelError::TooLarge { pixels: true });
    }
    let mut decoder = reader()
        .into_decoder()
        .map_err(|_| PixelError::Unsupported)?;
    let orientation = decoder.orientation().ok();
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| match e {
        image::ImageError::Limits(_) => PixelError::TooLarge { pixels: true },
        _ => PixelError::Unsupported,
    })?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    let alpha = img.color().has_alpha() && out != ImageKind::Jpeg;
    let (pixel_type, color, raw) = if alpha {
        (
            PixelType::U8x4,
            ExtendedColorType::Rgba8,
            Raw::from(img.into_rgba8()),
        )
    } else if img.color().has_alpha() {
        // JPEG has no alpha: transparent parts become white, as on a page.
        (PixelType::U8x3, ExtendedColorType::Rgb8, flatten(img))
    } else {
        (
            PixelType::U8x3,
            ExtendedColorType::Rgb8,
            rgb_as_raw(img.into_rgb8()),
        )
    };
    let (sw, sh) = (raw.width, raw.height);
    let fit = geometry((sw, sh), t);
    let pixels = if fit.size == (sw, sh) {
        raw.data
    } else {
        let src = fir::images::ImageRef::new(sw, sh, &raw.data, pixel_type)
            .map_err(|_| PixelError::Unsupported)?;
        let mut dst = fir::images::Image::new(fit.size.0, fit.size.1, pixel_type);
        let mut options =
            ResizeOptions::new().resize_alg(ResizeAlg::Convolution(fir::FilterType::Lanczos3));
        if fit.crop {
            options = options.fit_into_destination(Some((0.5, 0.5)));
        }
        Resizer::new()
            .resize(&src, &mut dst, &options)
            .map_err(|_| PixelError::Unsupported)?;
        dst.into_vec()
    };
    let (width, height) = fit.size;
    let bytes = encode(&pixels, width, height, color, out, t.quality())?;
    Ok(Rendered {
        bytes,
        kind: out,
        width,
        height,
    })
}

/// Raw pixels and their size.
struct Raw {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

impl From<image::RgbaImage> for Raw {
    fn from(i: image::RgbaImage) -> Raw {
        let (width, height) = i.dimensions();
        Raw {
            width,
            height,
            data: i.into_raw(),
        }
    }
}

fn rgb_as_raw(i: image::RgbImage) -> Raw {
    let (width, height) = i.dimensions();
    Raw {
        width,
        height,
        data: i.into_raw(),
    }
}

/// RGBA over white, as RGB.
fn flatten(img: DynamicImage) -> Raw {
    let rgba = img.into_rgba8();
    let (width, height) = rgba.dimensions();
    let data = rgba
        .pixels()
        .flat_map(|p| {
            let a = p[3] as u32;
            [0, 1, 2].map(|c| ((p[c] as u32 * a + 255 * (255 - a) + 127) / 255) as u8)
        })
        .collect();
    Raw {
        width,
        height,
        data,
    }
}

fn encode(
    pixels: &[u8],
    width: u32,
    height: u32,
    color: ExtendedColorType,
    out: ImageKind,
    quality: u8,
) -> Result<Vec<u8>, PixelError> {
    let mut buf = Vec::new();
    let failed = |_| PixelError::Unsupported;
    match out {
        ImageKind::Jpeg => JpegEncoder::new_with_quality(&mut buf, quality)
            .write_image(pixels, width, height, color)
            .map_err(failed)?,
        ImageKind::Png => PngEncoder::new(&mut buf)
            .write_image(pixels, width, height, color)
            .map_err(failed)?,
        ImageKind::Gif => {
            let rgba = match color {
                ExtendedColorType::Rgba8 => pixels.to_vec(),
                _ => pixels
                    .chunks_exact(3)
                    .flat_map(|p| [p[0], p[1], p[2], 255])
                    .collect(),
            };
            GifEncoder::new(&mut buf)
                .encode(&rgba, width, height, ExtendedColorType::Rgba8)
                .map_err(failed)?
        }
        ImageKind::Webp => {
            let encoder = match color {
                ExtendedColorType::Rgba8 => webp::Encoder::from_rgba(pixels, width, height),
                _ => webp::Encoder::from_rgb(pixels, width, height),
            };
            buf = encoder
                .encode_simple(false, quality as f32)
                .map_err(|_| PixelError::Unsupported)?
                .to_vec();
        }
    }
    Ok(buf)
}

/// Where an image of `src` size ends up for `t`: its output size, and whether the source is
/// cropped (centered) to the output's aspect ratio first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    pub size: (u32, u32),
    pub crop: bool,
}

/// imgproxy's geometry without enlargement (its default, and so Supabase's): one side given keeps
/// the aspect ratio; `cover` scales to fill the box and crops the overflow, `contain` scales to
/// fit inside it, `fill` scales each side on its own. A scale above 1 is held at 1, so a small
/// image stays its size (`cover` still crops it to at most the box).
pub fn geometry(src: (u32, u32), t: &Transform) -> Fit {
    let (sw, sh) = (src.0.max(1) as f64, src.1.max(1) as f64);
    let scaled = |s: f64| {
        let s = s.min(1.0);
        (side(sw * s), side(sh * s))
    };
    let (size, crop) = match (t.width, t.height) {
        (None, None) => (src, false),
        (Some(w), None) => (scaled(w as f64 / sw), false),
        (None, Some(h)) => (scaled(h as f64 / sh), false),
        (Some(w), Some(h)) => {
            let (wx, hx) = (w as f64 / sw, h as f64 / sh);
            match t.resize {
                Resize::Cover => {
                    let (rw, rh) = scaled(wx.max(hx));
                    ((rw.min(w), rh.min(h)), true)
                }
                Resize::Contain => (scaled(wx.min(hx)), false),
                Resize::Fill => ((side(sw * wx.min(1.0)), side(sh * hx.min(1.0))), false),
            }
        }
    };
    Fit { size, crop }
}

fn side(x: f64) -> u32 {
    (x.round() as u32).max(1)
}

#[cfg(test)]
#[path = "pixels_tests.rs"]
mod tests;
