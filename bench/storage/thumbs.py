#!/usr/bin/env python3
"""bench/storage's thumbnail case: thumbnails per second through doska's render route
(`GET /storage/v1/render/image/public/…?width=W&height=W&resize=cover`, JPEG out at quality 80, every
request a fresh object, so nothing comes from the render cache) against `vipsthumbnail` (libvips,
Debian's libvips-tools; `--size WxW --smartcrop centre`, JPEG Q=80) on the same JPEG files, with as
many vipsthumbnail processes as cores, each given its share of the files. Target: doska ≥ 0.5×.
Used by run.py (`--thumbs N`); runs alone too: bench/storage/thumbs.py [--thumbs N] [--repeat N].
Installs libvips-tools (apt) when vipsthumbnail is missing."""
import argparse, http.client, json, os, shutil, subprocess, sys, tempfile, time, urllib.parse
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
import lib  # noqa: E402

BUCKET = 'thumbs'


def ensure_vips():
    if shutil.which('vipsthumbnail') is None:
        subprocess.run(['apt-get', 'update', '-qq'], check=True)
        lib.need('vipsthumbnail', 'libvips-tools')


def make_images(d, n, width, height, distinct=4):
    """`n` JPEG files of `width`×`height` (Q=85, photo-like: gradients and grain), `distinct` of
    them different, made through a PPM and `vips copy`."""
    os.makedirs(d, exist_ok=True)
    line = width * 3
    grain = bytes(range(256)).translate(bytes(b & 15 for b in range(256)))
    made = []
    for k in range(distinct):
        ppm = os.path.join(d, f'src{k}.ppm')
        period = 200 + 7 * k
        ramp = bytes(((i * (k + 2)) // 3) % period for i in range(line + period))
        with open(ppm, 'wb') as f:
            f.write(f'P6 {width} {height} 255\n'.encode())
            for y in range(height):
                start = (y * (k + 1)) % period
                base = ramp[start:start + line]
                noise = os.urandom(line).translate(grain)
                # Byte-wise addition without carries: base < 240, noise < 16.
                f.write((int.from_bytes(base, 'big') + int.from_bytes(noise, 'big')).to_bytes(line, 'big'))
        jpg = os.path.join(d, f'src{k}.jpg')
        lib.sh(['vips', 'copy', ppm, f'{jpg}[Q=85]'])
        os.remove(ppm)
        made.append(jpg)
    paths = []
    for i in range(n):
        p = os.path.join(d, f'img{i:05d}.jpg')
        shutil.copyfile(made[i % distinct], p)
        paths.append(p)
    for m in made:
        os.remove(m)
    return paths


class Conn:
    """One keep-alive HTTP connection to doska."""

    def __init__(self, url, key):
        u = urllib.parse.urlsplit(url)
        self.c = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
        self.h = {'apikey': key, 'Authorization': f'Bearer {key}'}

    def req(self, method, path, body=None, headers=None):
        self.c.request(method, path, body=body, headers={**self.h, **(headers or {})})
        r = self.c.getresponse()
        data = r.read()
        return r.status, r.getheader('content-type'), data


def upload(d, paths, prefix, workers):
    c = Conn(d.url, d.service_key)
    s, _, body = c.req('POST', '/storage/v1/bucket', json.dumps({'name': BUCKET, 'public': True}),
                       {'Content-Type': 'application/json'})
    if s not in (200, 409):
        raise SystemExit(f'doska: create bucket: {s} {body[:300]}')

    def put(p):
        conn = Conn(d.url, d.service_key)
        with open(p, 'rb') as f:
            s, _, body = conn.req('POST', f'/storage/v1/object/{BUCKET}/{prefix}/{os.path.basename(p)}', f.read(),
                                  {'Content-Type': 'image/jpeg'})
        if s != 200:
            raise SystemExit(f'doska: upload {p}: {s} {body[:300]}')

    with ThreadPoolExecutor(workers) as ex:
        list(ex.map(put, paths))


def doska_thumbs(d, paths, prefix, size, workers):
    """Seconds for doska to answer one thumbnail of each file (already uploaded under `prefix`)."""
    conns = [Conn(d.url, d.anon_key) for _ in range(workers)]
    names = [os.path.basename(p) for p in paths]

    def run(w):
        c = conns[w]
        for name in names[w::workers]:
            s, ctype, body = c.req('GET', f'/storage/v1/render/image/public/{BUCKET}/{prefix}/{name}'
                                          f'?width={size}&height={size}&resize=cover')
            if s != 200 or ctype != 'image/jpeg' or len(body) < 200:
                raise SystemExit(f'doska: thumbnail of {name}: {s} {ctype} {body[:300]}')

    t = time.perf_counter()
    with ThreadPoolExecutor(workers) as ex:
        list(ex.map(run, range(workers)))
    return time.perf_counter() - t


def vips_thumbs(paths, out, size, procs):
    """Seconds for `procs` vipsthumbnail processes to make one thumbnail of each file."""
    os.makedirs(out, exist_ok=True)
    t = time.perf_counter()
    running = [subprocess.Popen(['vipsthumbnail', *paths[i::procs], '--size', f'{size}x{size}',
                                 '--smartcrop', 'centre', '-o', os.path.join(out, '%s.jpg[Q=80]')],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for i in range(procs)]
    for p in running:
        _, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f'vipsthumbnail failed ({p.returncode}): {err.decode()[-2000:]}')
    took = time.perf_counter() - t
    made = len(os.listdir(out))
    shutil.rmtree(out)
    if made != len(paths):
        raise SystemExit(f'vipsthumbnail made {made} of {len(paths)} thumbnails')
    return took


def measure(d, work, n, repeat, width=1600, height=1200, size=256, workers=None):
    """(doska thumbnails/s, vipsthumbnail thumbnails/s), best of `repeat` rounds, interleaved."""
    ensure_vips()
    cores = os.cpu_count() or 2
    workers = workers or 2 * cores
    paths = make_images(os.path.join(work, 'in-images'), n, width, height)
    best_doska, best_vips = float('inf'), float('inf')
    for r in range(repeat):
        # A fresh copy of the objects each round: new versions, so the render cache cannot answer.
        upload(d, paths, f'r{r}', workers)
        best_vips = min(best_vips, vips_thumbs(paths, os.path.join(work, f'out-vips-{r}'), size, cores))
        best_doska = min(best_doska, doska_thumbs(d, paths, f'r{r}', size, workers))
    return n / best_doska, n / best_vips


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--thumbs', type=int, default=200, help='images (one thumbnail each, per round)')
    ap.add_argument('--repeat', type=int, default=2)
    ap.add_argument('--width', type=int, default=1600)
    ap.add_argument('--height', type=int, default=1200)
    ap.add_argument('--size', type=int, default=256, help='thumbnail box (cover)')
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix='doska-bench-thumbs-')
    d = None
    try:
        d = lib.Doska({})
        doska, vips = measure(d, work, a.thumbs, a.repeat, a.width, a.height, a.size)
    finally:
        if d is not None:
            d.stop()
        shutil.rmtree(work, ignore_errors=True)
    ratio = doska / vips
    print(f'\nbench/storage thumbnails: {a.thumbs} JPEGs {a.width}x{a.height} → {a.size}x{a.size} cover, '
          f'best of {a.repeat}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}')
    ok = lib.table([(f'thumbnails vs vipsthumbnail', f'{doska:.1f}/s', f'{vips:.1f}/s', ratio, '>= 0.5',
                     ratio >= 0.5)])
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
