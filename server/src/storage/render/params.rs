//! The image render routes' parameters: `width`, `height`, `resize`, `quality` and `format` from
//! a query string (or from a signed URL's `transformations` claim) into a [`Transform`], with
//! Supabase storage's rules: sizes are non-negative integers, clamped to 1–2,000 (0 means "not
//! given"); `resize` is `cover` (the default), `contain` or `fill`; `quality` an integer from 20 to
//! 100 (default 80); `format` is `origin` (keep the source's format) or `webp`. Rejects anything
//! else with a [`ParamError`] (a 400): a size that is not an integer or is negative, an unknown
//! mode or format, `avif` (doska has no AVIF encoder), and imgproxy's `gravity`/offsets, which
//! doska does not implement. Other query parameters (`download`, `token`, `cacheNonce`) are not
//! this stage's business and are ignored, as Supabase ignores unknown ones.

use std::fmt;

/// Supabase's `IMAGE_TRANSFORMATION_LIMIT_MIN_SIZE` / `…_MAX_SIZE` defaults: asked sizes are
/// clamped into this range.
pub const MIN_SIZE: u32 = 1;
pub const MAX_SIZE: u32 = 2000;
/// imgproxy's default quality, which Supabase keeps.
pub const DEFAULT_QUALITY: u8 = 80;

/// How an image is fitted to the asked width and height (Supabase's names; imgproxy's `fill`,
/// `fit` and `force`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resize {
    /// Keep the aspect ratio, fill the whole box, crop what sticks out (centered).
    #[default]
    Cover,
    /// Keep the aspect ratio, fit inside the box.
    Contain,
    /// Stretch to the box.
    Fill,
}

impl Resize {
    fn parse(s: &str) -> Option<Resize> {
        match s {
            "cover" => Some(Resize::Cover),
            "contain" => Some(Resize::Contain),
            "fill" => Some(Resize::Fill),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Resize::Cover => "cover",
            Resize::Contain => "contain",
            Resize::Fill => "fill",
        }
    }
}

/// The output format asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Not given: WebP when the client's `Accept` takes it, else the source's format.
    #[default]
    Auto,
    /// `origin`: the source's format, whatever `Accept` says.
    Origin,
    /// `webp`, whatever `Accept` says.
    Webp,
}

/// One rendering asked for: what the query string (or a signed token) says, checked and clamped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Transform {
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub resize: Resize,
    pub quality: Option<u8>,
    pub format: Format,
}

/// A parameter refused, with the reason (answered as a 400 in storage's error shape).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("{0} must be a non-negative integer")]
    NotAnInteger(&'static str),
    #[error("quality must be an integer from 20 to 100")]
    Quality,
    #[error("resize must be one of cover, contain, fill")]
    Resize,
    #[error("format must be origin or webp")]
    Format,
    #[error("format avif is not supported by doska; use webp or origin")]
    Avif,
    #[error("{0} is not supported by doska's image transformations")]
    Unsupported(&'static str),
    #[error("the signed URL's transformations are malformed")]
    Token,
}

impl Transform {
    /// Reads the transformation parameters from query pairs (a repeated name: the last wins, as
    /// the storage API reads queries). Names this stage does not know are ignored.
    pub fn from_query<'a, I>(pairs: I) -> Result<Transform, ParamError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut t = Transform::default();
        for (name, value) in pairs {
            t.set(name, value)?;
        }
        Ok(t)
    }

    /// Reads a `transform` object as storage-js posts it to create a signed URL (`{width: 100,
    /// resize: "contain"}`): numbers as numbers or numeric strings, the same rules as a query.
    pub fn from_json(v: &serde_json::Value) -> Result<Transform, ParamError> {
        let Some(obj) = v.as_object() else {
            return match v {
                serde_json::Value::Null => Ok(Transform::default()),
                _ => Err(ParamError::Unsupported("a transform that is not an object")),
            };
        };
        let mut t = Transform::default();
        for (name, value) in obj {
            let text = match value {
                serde_json::Value::Null => continue,
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => "[object]".to_string(),
            };
            t.set(name, &text)?;
        }
        Ok(t)
    }

    fn set(&mut self, name: &str, value: &str) -> Result<(), ParamError> {
        match name {
            "width" => self.width = size(value, "width")?,
            "height" => self.height = size(value, "height")?,
            "resize" => self.resize = Resize::parse(value).ok_or(ParamError::Resize)?,
            "quality" => {
                let q = integer(value)
                    .filter(|q| (20..=100).contains(q))
                    .ok_or(ParamError::Quality)?;
                self.quality = Some(q as u8);
            }
            "format" => {
                self.format = match value {
                    "origin" => Format::Origin,
                    "webp" => Format::Webp,
                    "avif" => return Err(ParamError::Avif),
                    _ => return Err(ParamError::Format),
                }
            }
            "gravity" => return Err(ParamError::Unsupported("gravity")),
            "x_offset" => return Err(ParamError::Unsupported("x_offset")),
            "y_offset" => return Err(ParamError::Unsupported("y_offset")),
            _ => {}
        }
        Ok(())
    }

    /// Whether anything but the format is asked: a plain re-encoding otherwise.
    pub fn resizes(&self) -> bool {
        self.width.is_some() || self.height.is_some()
    }

    pub fn quality(&self) -> u8 {
        self.quality.unwrap_or(DEFAULT_QUALITY)
    }

    /// The token form, carried in a signed URL's `transformations` claim: `name:value` pairs
    /// joined by commas (Supabase's shape), read back by [`Transform::from_token`].
    pub fn to_token(&self) -> String {
        self.to_string()
    }

    /// Reads [`Transform::to_token`]'s form. An empty string is no transformation.
    pub fn from_token(s: &str) -> Result<Transform, ParamError> {
        let mut t = Transform::default();
        for item in s.split(',').filter(|i| !i.is_empty()) {
            let (name, value) = item.split_once(':').ok_or(ParamError::Token)?;
            t.set(name, value)?;
        }
        Ok(t)
    }
}

impl fmt::Display for Transform {
    /// `width:W,height:H,resize:R,quality:Q,format:F`, each only when given (resize only with a
    /// size or when not the default): also the `X-Transformations` header and part of the cache's file names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut items = Vec::new();
        if let Some(w) = self.width {
            items.push(format!("width:{w}"));
        }
        if let Some(h) = self.height {
            items.push(format!("height:{h}"));
        }
        if self.resizes() || self.resize != Resize::Cover {
            items.push(format!("resize:{}", self.resize.as_str()));
        }
        if let Some(q) = self.quality {
            items.push(format!("quality:{q}"));
        }
        match self.format {
            Format::Auto => {}
            Format::Origin => items.push("format:origin".into()),
            Format::Webp => items.push("format:webp".into()),
        }
        f.write_str(&items.join(","))
    }
}

/// A plain decimal integer (optional `+`), as JSON-schema coercion of a query string takes it.
/// Too long to fit is still an integer: it saturates (sizes are clamped anyway).
fn integer(s: &str) -> Option<u64> {
    let digits = s.strip_prefix('+').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse::<u64>().unwrap_or(u64::MAX))
}

/// A width or height: a non-negative integer; 0 is "not given" (as in Supabase, where 0 is
/// falsy); others clamped into `MIN_SIZE..=MAX_SIZE`.
fn size(s: &str, name: &'static str) -> Result<Option<u32>, ParamError> {
    let n = integer(s).ok_or(ParamError::NotAnInteger(name))?;
    Ok((n > 0).then(|| n.clamp(MIN_SIZE as u64, MAX_SIZE as u64) as u32))
}

#[cfg(test)]
#[path = "params_tests.rs"]
mod tests;
