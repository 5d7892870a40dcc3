/* Peak arithmetic rate of one core: independent AVX-512 FMA chains (fp32), AVX-512 VNNI dot products
   (int8 -> int32, vpdpbusd) and, where the CPU has it, AMX int8 tile products (tdpbusd).
   Built and run by benchmarks/peak.py (cc -O2 -march=native). Prints "name GOP/s" lines. */
#include <immintrin.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

#define REP12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

static double fp32(long iters) {
    __m512 b = _mm512_set1_ps(0.9999999f), c = _mm512_set1_ps(1e-7f);
#define DECL(i) __m512 a##i = _mm512_set1_ps((float)(i) + 1.0f);
    REP12(DECL)
    double t = now();
    for (long k = 0; k < iters; k++) {
#define FMA(i) a##i = _mm512_fmadd_ps(a##i, b, c);
        REP12(FMA)
    }
    t = now() - t;
    __m512 s = a0;
#define SUM(i) s = _mm512_add_ps(s, a##i);
    REP12(SUM)
    volatile float sink = _mm512_reduce_add_ps(s); (void)sink;
    return iters * 12.0 * 16 * 2 / t / 1e9;          /* 16 lanes, FMA = 2 FLOP */
}

static double vnni(long iters) {
    __m512i x = _mm512_set1_epi8(3), y = _mm512_set1_epi8(-2);
#define DECLI(i) __m512i c##i = _mm512_set1_epi32(i);
    REP12(DECLI)
    double t = now();
    for (long k = 0; k < iters; k++) {
#define DOT(i) c##i = _mm512_dpbusd_epi32(c##i, x, y);
        REP12(DOT)
    }
    t = now() - t;
    __m512i s = c0;
#define SUMI(i) s = _mm512_add_epi32(s, c##i);
    REP12(SUMI)
    volatile int sink = _mm512_reduce_add_epi32(s); (void)sink;
    return iters * 12.0 * 64 * 2 / t / 1e9;          /* 64 int8 multiply-adds per instruction */
}

#ifdef __AMX_INT8__
struct tilecfg { unsigned char palette, start; unsigned char pad[14]; unsigned short colsb[16]; unsigned char rows[16]; };
static double amx(long iters) {
    if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */)) return -1;
    struct tilecfg cfg; memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int i = 0; i < 8; i++) { cfg.rows[i] = 16; cfg.colsb[i] = 64; }
    _tile_loadconfig(&cfg);
    static signed char buf[16 * 64] __attribute__((aligned(64)));
    static int out[16 * 16] __attribute__((aligned(64)));
    memset(buf, 1, sizeof buf);
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
    _tile_loadd(4, buf, 64); _tile_loadd(5, buf, 64); _tile_loadd(6, buf, 64); _tile_loadd(7, buf, 64);
    double t = now();
    for (long k = 0; k < iters; k++) {
        _tile_dpbusd(0, 4, 6); _tile_dpbusd(1, 4, 7); _tile_dpbusd(2, 5, 6); _tile_dpbusd(3, 5, 7);
    }
    t = now() - t;
    _tile_stored(0, out, 64);
    _tile_release();
    volatile int sink = out[0]; (void)sink;
    return iters * 4.0 * 16 * 16 * 64 * 2 / t / 1e9;  /* 16x64 by 64x16 int8 per tile product */
}
#endif

int main(void) {
    double best;
    best = 0; for (int r = 0; r < 5; r++) { double g = fp32(20000000); if (g > best) best = g; }
    printf("fp32_fma %.1f\n", best);
    best = 0; for (int r = 0; r < 5; r++) { double g = vnni(20000000); if (g > best) best = g; }
    printf("int8_vnni %.1f\n", best);
#ifdef __AMX_INT8__
    best = 0; for (int r = 0; r < 5; r++) { double g = amx(2000000); if (g > best) best = g; }
    if (best > 0) printf("int8_amx %.1f\n", best);
#endif
    return 0;
}
