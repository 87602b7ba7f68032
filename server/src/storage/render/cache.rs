//! Rendered images kept on disk (in the data dir's `render-cache/`), one file per object version
//! and rendering, so a thumbnail asked again is read, not rendered. An object's new version has a
//! new name, so nothing is ever stale; old entries simply age out. Bounded: when the files pass
//! [`MAX_BYTES`], the least recently used are removed down to three quarters of it. Files are
//! written under a temporary name and renamed, so a reader never sees half a file; temporary
//! files left by a crash are removed when the cache is first used. Not synced: a file lost or
//! emptied by a crash is a miss (an empty file is never served). Every call blocks: run it off
//! the async runtime. Refuses nothing; a disk error is a miss (logged), never a failed request.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::SystemTime,
};

use uuid::Uuid;

use super::params::{Format, Transform};

/// The cache's bound in bytes.
pub const MAX_BYTES: u64 = 256 << 20;

pub struct Cache {
    dir: PathBuf,
    max_bytes: u64,
    /// Bytes in the cache's files, counted when first used (`None` until then).
    used: Mutex<Option<u64>>,
    /// Names temporary files apart between concurrent writers.
    next_tmp: AtomicU64,
}

impl Cache {
    pub fn new(dir: PathBuf, max_bytes: u64) -> Cache {
        Cache {
            dir,
            max_bytes,
            used: Mutex::new(None),
            next_tmp: AtomicU64::new(0),
        }
    }

    /// The file name of `version` rendered as `t`, in WebP or in the source's format: everything
    /// the output depends on, and only that (`format=origin` and no format without WebP in
    /// `Accept` are the same rendering).
    pub fn name(version: Uuid, t: &Transform, webp: bool) -> String {
        let t = Transform {
            format: Format::Auto,
            ..*t
        };
        let what = t.to_token().replace([':', ','], "_");
        format!(
            "{}.{what}.{}",
            version.simple(),
            if webp { "webp" } else { "orig" }
        )
    }

    /// The rendering named `name`, if kept (and marks it used).
    pub fn get(&self, name: &str) -> Option<Vec<u8>> {
        self.open();
        let path = self.dir.join(name);
        let bytes = fs::read(&path).ok().filter(|b| !b.is_empty())?;
        if let Ok(f) = fs::File::options().append(true).open(&path) {
            f.set_modified(SystemTime::now()).ok();
        }
        Some(bytes)
    }

    /// Keeps `bytes` as `name`, then trims the cache if it is over its bound.
    pub fn put(&self, name: &str, bytes: &[u8]) {
        self.open();
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .dir
            .join(format!("{name}.{}.{n}.tmp", std::process::id()));
        let written = fs::create_dir_all(&self.dir)
            .and_then(|_| fs::write(&tmp, bytes))
            .and_then(|_| fs::rename(&tmp, self.dir.join(name)));
        if let Err(e) = written {
            fs::remove_file(&tmp).ok();
            tracing::warn!(error = %e, dir = %self.dir.display(), "render cache write failed");
            return;
        }
        let over = {
            let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
            let total = used.unwrap_or(0) + bytes.len() as u64;
            *used = Some(total);
            total > self.max_bytes
        };
        if over {
            self.trim();
        }
    }

    /// Counts the files once and removes temporary ones left by a crash.
    fn open(&self) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if used.is_some() {
            return;
        }
        let mut total = 0;
        for (path, size, _) in entries(&self.dir) {
            if path.extension().is_some_and(|e| e == "tmp") {
                fs::remove_file(&path).ok();
            } else {
                total += size;
            }
        }
        *used = Some(total);
    }

    /// Removes the least recently used files down to three quarters of the bound.
    fn trim(&self) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        let mut files: Vec<_> = entries(&self.dir)
            .filter(|(p, _, _)| p.extension().is_none_or(|e| e != "tmp"))
            .collect();
        let mut total: u64 = files.iter().map(|(_, size, _)| size).sum();
        files.sort_by_key(|(_, _, modified)| *modified);
        let target = self.max_bytes / 4 * 3;
        for (path, size, _) in files {
            if total <= target {
                break;
            }
            if fs::remove_file(&path).is_ok() {
                total -= size;
            }
        }
        *used = Some(total);
    }
}

/// The cache dir's files: path, size, last modified.
fn entries(dir: &Path) -> impl Iterator<Item = (PathBuf, u64, SystemTime)> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let meta = e.metadata().ok().filter(|m| m.is_file())?;
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            Some((e.path(), meta.len(), modified))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_renders_and_trims_the_least_recently_used() {
        let dir = std::env::temp_dir().join(format!("doska-render-cache-{}", Uuid::new_v4()));
        let cache = Cache::new(dir.clone(), 1100);
        let t = Transform {
            width: Some(10),
            ..Transform::default()
        };
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(cache.get(&Cache::name(a, &t, true)), None);
        cache.put(&Cache::name(a, &t, true), &[1; 400]);
        std::thread::sleep(std::time::Duration::from_millis(20));
        cache.put(&Cache::name(b, &t, true), &[2; 400]);
        std::thread::sleep(std::time::Duration::from_millis(20));
        // `a` is used again: `b` is now the least recently used.
        assert_eq!(cache.get(&Cache::name(a, &t, true)), Some(vec![1; 400]));
        // Another rendering of `a` is another file.
        assert_eq!(cache.get(&Cache::name(a, &t, false)), None);
        std::thread::sleep(std::time::Duration::from_millis(20));
        cache.put(&Cache::name(c, &t, true), &[3; 400]);
        assert_eq!(cache.get(&Cache::name(b, &t, true)), None);
        assert!(cache.get(&Cache::name(a, &t, true)).is_some());
        assert!(cache.get(&Cache::name(c, &t, true)).is_some());
        // An empty file (a crash between write and rename's data) is a miss; temp files go.
        fs::write(dir.join(Cache::name(b, &t, false)), b"").unwrap();
        fs::write(dir.join("x.webp.1.0.tmp"), b"half").unwrap();
        let reopened = Cache::new(dir.clone(), 1000);
        assert_eq!(reopened.get(&Cache::name(b, &t, false)), None);
        assert!(!dir.join("x.webp.1.0.tmp").exists());
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn names_hold_everything_the_output_depends_on() {
        let v = Uuid::nil();
        let t = Transform::from_query([("width", "100"), ("resize", "fill")]).unwrap();
        assert_eq!(
            Cache::name(v, &t, true),
            "00000000000000000000000000000000.width_100_resize_fill.webp"
        );
        let origin =
            Transform::from_query([("width", "100"), ("resize", "fill"), ("format", "origin")])
                .unwrap();
        assert_eq!(Cache::name(v, &origin, false), Cache::name(v, &t, false));
        assert_eq!(
            Cache::name(v, &Transform::default(), false),
            "00000000000000000000000000000000..orig"
        );
    }
}
