/* Peak arithmetic rate of one core: independent FMA chains (fp32; AVX-512, else AVX2), int8 dot products
   (int8 -> int32: AVX-512 VNNI vpdpbusd, else AVX-VNNI, else AVX2's vpmaddubsw + vpmaddwd + vpaddd, the
   sequence onnxruntime's u8s8 kernels use there) and, where the CPU has it, AMX int8 tile products (tdpbusd).
   Built and run by benchmarks/peak.py (cc -O2 -march=native). Prints "name GOP/s" lines. */
#include <immintrin.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

#define REP12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

#if defined(__AVX512F__)
#define FWIDE "fp32_fma_avx512"
typedef __m512 vf;
#define LANES 16
#define SET1(x) _mm512_set1_ps(x)
#define FMADD(a, b, c) _mm512_fmadd_ps(a, b, c)
#define ADD(a, b) _mm512_add_ps(a, b)
static float hsum(vf s) { return _mm512_reduce_add_ps(s); }
#elif defined(__AVX2__) && defined(__FMA__)
#define FWIDE "fp32_fma_avx2"
typedef __m256 vf;
#define LANES 8
#define SET1(x) _mm256_set1_ps(x)
#define FMADD(a, b, c) _mm256_fmadd_ps(a, b, c)
#define ADD(a, b) _mm256_add_ps(a, b)
static float hsum(vf s) { float f[8]; _mm256_storeu_ps(f, s); return f[0] + f[7]; }
#else
#error "peak.c needs AVX2 with FMA or AVX-512"
#endif

static double fp32(long iters) {
    vf b = SET1(0.9999999f), c = SET1(1e-7f);
#define DECL(i) vf a##i = SET1((float)(i) + 1.0f);
    REP12(DECL)
    double t = now();
    for (long k = 0; k < iters; k++) {
#define FMA(i) a##i = FMADD(a##i, b, c);
        REP12(FMA)
    }
    t = now() - t;
    vf s = a0;
#define SUM(i) s = ADD(s, a##i);
    REP12(SUM)
    volatile float sink = hsum(s); (void)sink;
    return iters * 12.0 * LANES * 2 / t / 1e9;        /* FMA = 2 FLOP per lane */
}

/* int8 multiply-adds: 64 per AVX-512 VNNI instruction, 32 per AVX-VNNI one, 32 per AVX2 three-instruction step */
#if defined(__AVX512VNNI__)
#define INAME "int8_vnni"
typedef __m512i vi;
#define MACS 64
#define ISET8(x) _mm512_set1_epi8(x)
#define ISET32(x) _mm512_set1_epi32(x)
#define DOTACC(c, x, y) _mm512_dpbusd_epi32(c, x, y)
#define IADD(a, b) _mm512_add_epi32(a, b)
static int ihsum(vi s) { return _mm512_reduce_add_epi32(s); }
#elif defined(__AVXVNNI__)
#define INAME "int8_avxvnni"
typedef __m256i vi;
#define MACS 32
#define ISET8(x) _mm256_set1_epi8(x)
#define ISET32(x) _mm256_set1_epi32(x)
#define DOTACC(c, x, y) _mm256_dpbusd_avx_epi32(c, x, y)
#define IADD(a, b) _mm256_add_epi32(a, b)
static int ihsum(vi s) { return _mm256_extract_epi32(s, 0); }
#else
#define INAME "int8_avx2"
typedef __m256i vi;
#define MACS 32
#define ISET8(x) _mm256_set1_epi8(x)
#define ISET32(x) _mm256_set1_epi32(x)
#define DOTACC(c, x, y) _mm256_add_epi32(c, _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), ones))
#define IADD(a, b) _mm256_add_epi32(a, b)
static int ihsum(vi s) { return _mm256_extract_epi32(s, 0); }
#endif

static double int8(long iters) {
    vi x = ISET8(3), y = ISET8(-2);
    __attribute__((unused)) __m256i ones = _mm256_set1_epi16(1);
#define DECLI(i) vi c##i = ISET32(i);
    REP12(DECLI)
    double t = now();
    for (long k = 0; k < iters; k++) {
#define DOT(i) c##i = DOTACC(c##i, x, y);
        REP12(DOT)
    }
    t = now() - t;
    vi s = c0;
#define SUMI(i) s = IADD(s, c##i);
    REP12(SUMI)
    volatile int sink = ihsum(s); (void)sink;
    return iters * 12.0 * MACS * 2 / t / 1e9;
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
    printf("%s %.1f\n", FWIDE, best);
    best = 0; for (int r = 0; r < 5; r++) { double g = int8(20000000); if (g > best) best = g; }
    printf("%s %.1f\n", INAME, best);
#ifdef __AMX_INT8__
    best = 0; for (int r = 0; r < 5; r++) { double g = amx(2000000); if (g > best) best = g; }
    if (best > 0) printf("int8_amx %.1f\n", best);
#endif
    return 0;
}
