/* Unit tests of src/core/encoding.c: base64 (RFC 4648 vectors, the URL-safe
 * alphabet Fernet and memcached:// use, round trips across OpenSSL's chunk
 * size, every kind of bad input, including what EVP_DecodeBlock alone would
 * accept), hex and percent-decoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"

/* Encode s with flags and compare with want. */
static void enc_is(const char *s, size_t n, int flags, const char *want) {
  char out[256];
  assert_true(KV__B64_SIZE(n) <= sizeof out);
  assert_int_equal(kv__b64_encode(s, n, out, flags), strlen(want));
  assert_string_equal(out, want);
}

/* Decode text with flags: -1, or the bytes want[0..n). */
static void dec_is(const char *text, int flags, const char *want, long long n) {
  unsigned char out[256];
  size_t len = strlen(text);
  memset(out, 0xa5, sizeof out);
  assert_true(len / 4 * 3 <= sizeof out);
  assert_int_equal(kv__b64_decode(text, len, out, flags), n);
  if (n > 0) assert_memory_equal(out, want, (size_t)n);
}

static void dec_fails(const char *text, int flags) {
  dec_is(text, flags, NULL, -1);
}

static void b64_rfc4648_vectors(void **state) {
  static const char *const v[][2] = {{"", ""},
                                     {"f", "Zg=="},
                                     {"fo", "Zm8="},
                                     {"foo", "Zm9v"},
                                     {"foob", "Zm9vYg=="},
                                     {"fooba", "Zm9vYmE="},
                                     {"foobar", "Zm9vYmFy"}};
  (void)state;
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    size_t n = strlen(v[i][0]);
    enc_is(v[i][0], n, 0, v[i][1]);
    enc_is(v[i][0], n, KV__B64_URL, v[i][1]);
    dec_is(v[i][1], 0, v[i][0], (long long)n);
    dec_is(v[i][1], KV__B64_URL, v[i][0], (long long)n);
  }
  /* Without padding. */
  enc_is("f", 1, KV__B64_NOPAD, "Zg");
  enc_is("fo", 2, KV__B64_NOPAD, "Zm8");
  enc_is("foo", 3, KV__B64_NOPAD, "Zm9v");
}

static void b64_empty_input(void **state) {
  char out[4] = "xyz";
  unsigned char raw[1] = {0x5a};
  (void)state;
  assert_int_equal(kv__b64_encode("", 0, out, 0), 0);
  assert_string_equal(out, "");
  assert_int_equal(kv__b64_encode(NULL, 0, out, KV__B64_URL), 0);
  assert_int_equal(kv__b64_decode("", 0, raw, 0), 0);
  assert_int_equal(kv__b64_decode("", 0, raw, KV__B64_URL), 0);
  assert_int_equal(raw[0], 0x5a); /* nothing written */
}

/* The two alphabets differ in the characters for 62 and 63 only, and each
 * decoder refuses the other's. */
static void b64_fernet_alphabet(void **state) {
  static const unsigned char hi[] = {0xfb, 0xff, 0xbf};
  (void)state;
  enc_is((const char *)hi, 3, 0, "+/+/");
  enc_is((const char *)hi, 3, KV__B64_URL, "-_-_");
  dec_is("-_-_", KV__B64_URL, (const char *)hi, 3);
  dec_is("+/+/", 0, (const char *)hi, 3);
  dec_fails("+/+/", KV__B64_URL);
  dec_fails("-_-_", 0);
  dec_fails("ab+_", KV__B64_URL);
  dec_fails("ab-/", 0);
  /* The Fernet specification's key and the bytes it stands for. */
  {
    static const char key[] = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=";
    unsigned char raw[33];
    char again[KV__B64_SIZE(32)];
    assert_int_equal(kv__b64_decode(key, 44, raw, KV__B64_URL), 32);
    assert_int_equal(raw[0], 0x73);
    assert_int_equal(raw[31], 0xee);
    assert_int_equal(kv__b64_encode(raw, 32, again, KV__B64_URL), 44);
    assert_string_equal(again, key);
    assert_int_equal(kv__b64_decode(key, 44, raw, 0), -1);
  }
}

/* Every byte value, and lengths around OpenSSL's chunk sizes (3072 bytes in,
 * 4096 characters out), round-trip in both alphabets, decoded into buffers
 * of exactly the decoded size. */
static void b64_round_trips(void **state) {
  static const size_t lens[] = {0,    1,    2,    3,    4,     255,
                                256,  257,  3071, 3072, 3073,  3074,
                                6144, 6145, 9216, 9217, 100001};
  unsigned char *in = malloc(100001);
  char *text = malloc(KV__B64_SIZE(100001));
  (void)state;
  assert_non_null(in);
  assert_non_null(text);
  for (size_t i = 0; i < 100001; i++)
    in[i] = (unsigned char)(i * 7 + i / 256);
  for (size_t f = 0; f < 2; f++) {
    int flags = f ? KV__B64_URL : 0;
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
      size_t n = lens[i], tl = kv__b64_encode(in, n, text, flags);
      assert_int_equal(tl, (n + 2) / 3 * 4);
      assert_int_equal(strlen(text), tl);
      assert_null(strchr(text, f ? '+' : '-'));
      assert_null(strchr(text, f ? '/' : '_'));
      /* room for the decoded bytes only: ASan sees a write past them */
      unsigned char *back = malloc(n ? n : 1);
      assert_non_null(back);
      assert_int_equal(kv__b64_decode(text, tl, back, flags), (long long)n);
      if (n) assert_memory_equal(back, in, n);
      free(back);
    }
  }
  free(in);
  free(text);
}

static void b64_bad_input_rejected(void **state) {
  (void)state;
  for (int f = 0; f < 2; f++) {
    int flags = f ? KV__B64_URL : 0;
    dec_fails("Zg=", flags); /* length not a multiple of 4 */
    dec_fails("Zm9vY", flags);
    dec_fails("Z", flags);
    dec_fails("Zg===", flags); /* too much padding */
    dec_fails("Z===", flags);
    dec_fails("====", flags);
    dec_fails("Zg==Zm8=", flags); /* padding in the middle */
    dec_fails("Z=g=", flags);
    dec_fails("Zm=v", flags);
    dec_fails("Zh==", flags); /* unused bits set: not canonical */
    dec_fails("Zm9=", flags);
    dec_fails("Zm 9v", flags); /* characters outside the alphabet */
    dec_fails("Zm9v\n", flags);
    dec_fails("Zm.v", flags);
    dec_fails("Zm9\x80", flags);
    /* What EVP_DecodeBlock alone accepts: leading and trailing white
     * space, and trailing '-' characters, which it drops. */
    dec_fails(" Zm9vYg==", flags);
    dec_fails("\tZm9v", flags);
    dec_fails("Zm9v    ", flags);
    dec_fails("Zm9vYg==\r\n", flags);
    dec_fails("Zm9vYmE=----", 0);
  }
  /* A NUL inside the given length is a bad character, not an end. */
  {
    unsigned char out[8];
    assert_int_equal(kv__b64_decode("Zm\0v", 4, out, 0), -1);
  }
  /* An error in a chunk after the first is found too. */
  {
    size_t n = 3 * 4096;
    char *text = malloc(n + 1);
    unsigned char *out = malloc(n);
    assert_non_null(text);
    assert_non_null(out);
    memset(text, 'A', n);
    text[n] = '\0';
    assert_int_equal(kv__b64_decode(text, n, out, 0), (long long)(n / 4 * 3));
    text[2 * 4096 + 5] = '*';
    assert_int_equal(kv__b64_decode(text, n, out, 0), -1);
    free(text);
    free(out);
  }
}

static void hex_encode_decode(void **state) {
  static const unsigned char bytes[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
  unsigned char out[8];
  char text[2 * sizeof bytes + 1];
  (void)state;
  kv__hex_encode(bytes, sizeof bytes, text);
  assert_string_equal(text, "00017f80abff");
  kv__hex_encode("", 0, text);
  assert_string_equal(text, "");
  assert_int_equal(kv__hex_decode("00017f80abff", 12, out), 6);
  assert_memory_equal(out, bytes, 6);
  assert_int_equal(kv__hex_decode("00017F80ABFF", 12, out), 6);
  assert_memory_equal(out, bytes, 6);
  assert_int_equal(kv__hex_decode("", 0, out), 0);
  assert_int_equal(kv__hex_decode("abc", 3, out), -1); /* odd length */
  assert_int_equal(kv__hex_decode("0g", 2, out), -1);
  assert_int_equal(kv__hex_decode("-1", 2, out), -1);
  assert_int_equal(kv__hex_decode(" 1", 2, out), -1);
  assert_int_equal(kv__hex_decode("1\0", 2, out), -1);
}

static void pct_is(const char *in, const char *want) {
  char *out = (char *)1;
  assert_int_equal(kv__pct_decode(in, strlen(in), &out), 0);
  assert_non_null(out);
  assert_string_equal(out, want);
  kv_free(out);
}

static void pct_fails(const char *in) {
  char *out = (char *)1;
  assert_int_equal(kv__pct_decode(in, strlen(in), &out), KV_EINVAL);
  assert_null(out);
}

static void pct_decoding(void **state) {
  (void)state;
  pct_is("", "");
  pct_is("plain", "plain");
  pct_is("a%20b", "a b");
  pct_is("%3Fmax_entries=5", "?max_entries=5");
  pct_is("%3f%2C%7c%40", "?,|@");
  pct_is("a+b", "a+b");       /* '+' is not a space here */
  pct_is("%25%32%35", "%25"); /* decoded once */
  pct_is("%e2%82%ac", "\xe2\x82\xac");
  pct_fails("%");
  pct_fails("%4");
  pct_fails("a%4");
  pct_fails("%zz");
  pct_fails("%4g");
  pct_fails("% 41");
  pct_fails("%00"); /* no NUL inside a C string */
  pct_fails("ok%");
  /* Only the given length is read. */
  {
    char *out;
    assert_int_equal(kv__pct_decode("ab%41cd", 5, &out), 0);
    assert_string_equal(out, "abA");
    kv_free(out);
    assert_int_equal(kv__pct_decode("ab%41", 4, &out), KV_EINVAL);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(b64_rfc4648_vectors),
      cmocka_unit_test(b64_empty_input),
      cmocka_unit_test(b64_fernet_alphabet),
      cmocka_unit_test(b64_round_trips),
      cmocka_unit_test(b64_bad_input_rejected),
      cmocka_unit_test(hex_encode_decode),
      cmocka_unit_test(pct_decoding),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
