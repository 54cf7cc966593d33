/*
 * vmm-workload: the guest side of @vmm/qemu. Runs as the only program of a busybox initramfs (exec'd by
 * /init), built with `gcc -static` by scripts/build-guest-image.sh.
 *
 * It reads its parameters from the kernel command line (vmm.key=value, computed by the driver's
 * kernel-cmdline.ts from the VM spec), then
 *   1. fills its memory with the image's content, byte for byte what libs/emulator/src/images.ts
 *      generates for the same image (same xoshiro128** stream, same page layout), so that guests of one
 *      image share pages under the host's KSM and a QEMU guest holds what an emulated one holds;
 *   2. writes to its working set at the configured rate, paced by the clock, in the pattern of
 *      libs/emulator/src/vcpu-workload.ts (same stores for the same seed, salt and counter);
 *   3. prints on the console "vmm: ready ..." once the image is in memory, then "vmm: writes=N ..."
 *      every report period. Errors print "vmm: error ..." and the program waits forever (init must not
 *      exit: the kernel would panic with nothing said).
 *
 * Parameters (all required except report_ms):
 *   vmm.image=NAME vmm.image_seed=U32 vmm.image_pages=N   the image (ImageSpec of the emulator)
 *   vmm.kind=idle|uniform|hotcold|sequential vmm.rate=PAGES_PER_SEC vmm.ws_pages=N
 *   vmm.seed=U64 vmm.salt=U32                             the workload (WorkloadConfig, VM salt)
 *   vmm.report_ms=MS                                      console report period (default 200)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE_SIZE 4096u
#define PAGE_WORDS (PAGE_SIZE / 4u)
/* images.ts: the shape of an image's content. */
static const double ZERO_PAGE_FRACTION = 0.2;
static const double DUPLICATE_PAGE_FRACTION = 0.15;
/* vcpu-workload.ts: MAX_BACKLOG_SEC and MAX_ADVANCE_SEC. */
static const double MAX_BACKLOG_SEC = 1.0;
static const double MAX_ADVANCE_SEC = 0.1;

/* ---- prng.ts: xoshiro128** seeded through splitmix32, and mix32 ---- */

typedef struct { uint32_t s[4]; } xoshiro128;

static void xo_seed(xoshiro128 *r, uint32_t seed) {
  uint32_t x = seed;
  for (int i = 0; i < 4; i++) {
    x += 0x9e3779b9u;
    uint32_t z = x;
    z = (z ^ (z >> 16)) * 0x85ebca6bu;
    z = (z ^ (z >> 13)) * 0xc2b2ae35u;
    r->s[i] = z ^ (z >> 16);
  }
  if ((r->s[0] | r->s[1] | r->s[2] | r->s[3]) == 0) r->s[0] = 1;
}

static inline uint32_t rotl(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }

static inline uint32_t xo_next(xoshiro128 *r) {
  uint32_t *s = r->s;
  uint32_t result = rotl(s[1] * 5u, 7) * 9u;
  uint32_t t = s[1] << 9;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 11);
  return result;
}

/* nextFloat(): 32 bits over 2^32, a double as in JavaScript. */
static inline double xo_float(xoshiro128 *r) { return (double)xo_next(r) / 4294967296.0; }

static inline uint32_t xo_below(xoshiro128 *r, uint32_t n) { return (uint32_t)floor(xo_float(r) * (double)n); }

static inline uint32_t mix32(uint32_t x) {
  x = (x ^ (x >> 16)) * 0x85ebca6bu;
  x = (x ^ (x >> 13)) * 0xc2b2ae35u;
  return x ^ (x >> 16);
}

/* ---- console ---- */

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (n > (int)sizeof line - 2) n = sizeof line - 2;
  line[n++] = '\n';
  for (int off = 0; off < n;) {
    ssize_t w = write(1, line + off, (size_t)(n - off));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    off += (int)w;
  }
}

static void die(const char *what) {
  say("vmm: error %s", what);
  for (;;) pause();
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- parameters ---- */

enum kind { IDLE, UNIFORM, HOTCOLD, SEQUENTIAL };

struct params {
  char image[129];
  uint32_t image_seed;
  uint32_t image_pages;
  enum kind kind;
  double rate;
  uint32_t ws_pages;
  uint64_t seed;
  uint32_t salt;
  uint32_t report_ms;
  unsigned seen;
};

#define SEEN(bit) (1u << (bit))

static int parse_u64(const char *s, uint64_t max, uint64_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s || *end || v > max) return -1;
  *out = v;
  return 0;
}

static void parse_param(struct params *p, const char *key, const char *val) {
  uint64_t v;
  if (!strcmp(key, "image")) {
    if (strlen(val) >= sizeof p->image) die("vmm.image is too long");
    strcpy(p->image, val);
    p->seen |= SEEN(0);
  } else if (!strcmp(key, "image_seed")) {
    if (parse_u64(val, UINT32_MAX, &v)) die("vmm.image_seed is not a 32-bit integer");
    p->image_seed = (uint32_t)v;
    p->seen |= SEEN(1);
  } else if (!strcmp(key, "image_pages")) {
    if (parse_u64(val, UINT32_MAX, &v)) die("vmm.image_pages is not a 32-bit integer");
    p->image_pages = (uint32_t)v;
    p->seen |= SEEN(2);
  } else if (!strcmp(key, "kind")) {
    if (!strcmp(val, "idle")) p->kind = IDLE;
    else if (!strcmp(val, "uniform")) p->kind = UNIFORM;
    else if (!strcmp(val, "hotcold")) p->kind = HOTCOLD;
    else if (!strcmp(val, "sequential")) p->kind = SEQUENTIAL;
    else die("vmm.kind is not idle, uniform, hotcold or sequential");
    p->seen |= SEEN(3);
  } else if (!strcmp(key, "rate")) {
    char *end;
    p->rate = strtod(val, &end);
    if (end == val || *end || !isfinite(p->rate) || p->rate < 0) die("vmm.rate is not a number >= 0");
    p->seen |= SEEN(4);
  } else if (!strcmp(key, "ws_pages")) {
    if (parse_u64(val, UINT32_MAX, &v)) die("vmm.ws_pages is not a 32-bit integer");
    p->ws_pages = (uint32_t)v;
    p->seen |= SEEN(5);
  } else if (!strcmp(key, "seed")) {
    if (parse_u64(val, UINT64_MAX, &v)) die("vmm.seed is not an integer");
    p->seed = v;
    p->seen |= SEEN(6);
  } else if (!strcmp(key, "salt")) {
    if (parse_u64(val, UINT32_MAX, &v)) die("vmm.salt is not a 32-bit integer");
    p->salt = (uint32_t)v;
    p->seen |= SEEN(7);
  } else if (!strcmp(key, "report_ms")) {
    if (parse_u64(val, 60000, &v) || v == 0) die("vmm.report_ms is not in 1..60000");
    p->report_ms = (uint32_t)v;
  }
}

static void read_params(struct params *p) {
  char cmdline[4096];
  int fd = open("/proc/cmdline", O_RDONLY);
  if (fd < 0) die("cannot open /proc/cmdline (is /proc mounted?)");
  ssize_t n = read(fd, cmdline, sizeof cmdline - 1);
  close(fd);
  if (n <= 0) die("cannot read /proc/cmdline");
  cmdline[n] = 0;
  memset(p, 0, sizeof *p);
  p->report_ms = 200;
  for (char *save = NULL, *tok = strtok_r(cmdline, " \t\n", &save); tok; tok = strtok_r(NULL, " \t\n", &save)) {
    if (strncmp(tok, "vmm.", 4)) continue;
    char *eq = strchr(tok, '=');
    if (!eq) continue;
    *eq = 0;
    parse_param(p, tok + 4, eq + 1);
  }
  if (p->seen != 0xffu) die("missing vmm.* parameters on the kernel command line");
}

/* ---- the image: generate() of images.ts, written straight into guest memory ---- */

struct image_stats { uint32_t zero, duplicate, unique; };

static struct image_stats fill_image(uint8_t *mem, const struct params *p) {
  struct image_stats st = {0, 0, 0};
  if (p->image_pages == 0) return st;
  uint32_t *slot_page = malloc((size_t)p->image_pages * sizeof *slot_page); /* slot → the page holding it */
  if (!slot_page) die("out of memory for the image's slot table");
  xoshiro128 rng;
  xo_seed(&rng, p->image_seed);
  for (uint32_t page = 0; page < p->image_pages; page++) {
    double r = xo_float(&rng);
    uint8_t *dst = mem + (size_t)page * PAGE_SIZE;
    if (r < ZERO_PAGE_FRACTION) {
      st.zero++; /* untouched anonymous memory reads as zero */
    } else if (r < ZERO_PAGE_FRACTION + DUPLICATE_PAGE_FRACTION && st.unique > 0) {
      uint32_t slot = xo_below(&rng, st.unique);
      memcpy(dst, mem + (size_t)slot_page[slot] * PAGE_SIZE, PAGE_SIZE);
      st.duplicate++;
    } else {
      uint32_t *w = (uint32_t *)dst;
      for (uint32_t i = 0; i < PAGE_WORDS; i++) w[i] = xo_next(&rng);
      w[0] |= 1; /* a unique page is never all zero */
      slot_page[st.unique++] = page;
    }
  }
  free(slot_page);
  return st;
}

/* ---- the workload: VcpuWorkload.step() and advance() of vcpu-workload.ts ---- */

struct workload {
  uint8_t *mem;
  enum kind kind;
  uint32_t ws;
  xoshiro128 rng;
  uint32_t key;
  uint64_t writes;
  uint32_t sweep_page;
};

static void step(struct workload *w, uint64_t n) {
  if (w->kind == IDLE || w->ws == 0) return;
  for (uint64_t i = 0; i < n; i++) {
    uint32_t page, offset;
    if (w->kind == SEQUENTIAL) {
      page = w->sweep_page;
      offset = (uint32_t)((w->writes / w->ws) % (PAGE_SIZE / 8)) * 8;
      if (++w->sweep_page == w->ws) w->sweep_page = 0;
    } else {
      double u = xo_float(&w->rng);
      page = w->kind == UNIFORM ? (uint32_t)floor(u * w->ws) : (uint32_t)floor((double)w->ws * u * u * u);
      offset = (xo_next(&w->rng) >> 23) << 3;
    }
    uint64_t count = w->writes;
    uint32_t lo = mix32((uint32_t)count ^ w->key);
    uint32_t hi = (uint32_t)(count >> 32) ^ mix32(w->key);
    if ((lo | hi) == 0) lo = 1; /* a store of zero would not change a zero page */
    volatile uint32_t *word = (volatile uint32_t *)(w->mem + (size_t)page * PAGE_SIZE + offset);
    word[0] = lo;
    word[1] = hi;
    w->writes = count + 1;
  }
}

static void sleep_ms(uint32_t ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
}

int main(void) {
  struct params p;
  read_params(&p);
  uint32_t pages = p.image_pages > p.ws_pages ? p.image_pages : p.ws_pages;
  if (pages == 0) pages = 1;
  uint8_t *mem = mmap(NULL, (size_t)pages * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) die("cannot map the guest's memory (is the VM large enough for image and working set?)");
  /* 4 KiB pages, as the emulator has: a zero page stays unbacked, a write backs one page only. */
  madvise(mem, (size_t)pages * PAGE_SIZE, MADV_NOHUGEPAGE);

  uint64_t t0 = now_ms();
  struct image_stats st = fill_image(mem, &p);
  say("vmm: ready image=%s pages=%u zero=%u duplicate=%u unique=%u fill_ms=%llu ws_pages=%u", p.image, p.image_pages,
      st.zero, st.duplicate, st.unique, (unsigned long long)(now_ms() - t0), p.ws_pages);

  struct workload w = {.mem = mem, .kind = p.kind, .ws = p.ws_pages, .writes = 0, .sweep_page = 0};
  xo_seed(&w.rng, (uint32_t)p.seed ^ p.salt);
  w.key = mix32(p.salt ^ mix32((uint32_t)p.seed));
  double rate = p.kind == IDLE ? 0 : p.rate;

  uint64_t last = now_ms(), last_report = 0;
  double credit = 0;
  for (;;) {
    uint64_t now = now_ms();
    if (rate > 0) {
      credit += (double)(now - last) * rate / 1000.0;
      if (credit > rate * MAX_BACKLOG_SEC + 1) credit = rate * MAX_BACKLOG_SEC + 1;
      double cap = ceil(rate * MAX_ADVANCE_SEC);
      uint64_t n = (uint64_t)(floor(credit) < cap ? floor(credit) : cap);
      credit -= (double)n;
      step(&w, n);
    }
    last = now;
    if (now - last_report >= p.report_ms) {
      say("vmm: writes=%llu uptime_ms=%llu", (unsigned long long)w.writes, (unsigned long long)now);
      last_report = now;
    }
    sleep_ms(rate > 0 ? 1 : p.report_ms);
  }
}
