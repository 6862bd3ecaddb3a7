/* The encryption wrapper (Fernet), a codec wrapper (wrappers/codec.h).
 *
 * Stored values are Fernet tokens, nothing added: any Fernet implementation
 * given the key reads them. Keys are decoded (or derived with PBKDF2) once,
 * when the wrapper is made, and wiped when it is freed; no message of this
 * file quotes a key, a key's source material or a salt. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "internal.h"
#include "kvio/encryption.h"
#include "wrappers/codec.h"
#include "wrappers/fernet.h"
#include "wrappers/wrappers.h"

/* ===========================================================================
 * The encryption wrapper
 * ===========================================================================
 */

typedef struct {
  kv__codec_wrap_t c;
  kv__fernet_key_t *keys; /* keys[0] encrypts; all decrypt */
  size_t nkeys;
  int allow_plaintext;
} enc_t;

static int enc_encode(kv_wrap_t *w, const char *in, size_t len, char **out,
                      size_t *out_len, char *errbuf, size_t errbuf_len) {
  enc_t *e = (enc_t *)w;
  int rc = kv__fernet_encrypt(&e->keys[0], in, len, out, out_len);
  if (rc == KV_ETOOBIG)
    return kv__errbuf(errbuf, errbuf_len, rc,
                      "value of %zu bytes is too big to encrypt", len);
  if (rc == KV_EBACKEND)
    return kv__errbuf(errbuf, errbuf_len, rc, "OpenSSL failed to encrypt");
  return rc;
}

static int enc_decode(kv_wrap_t *w, const char *in, size_t len, char **out,
                      size_t *out_len, char *errbuf, size_t errbuf_len) {
  enc_t *e = (enc_t *)w;
  int rc =
      kv__fernet_decrypt_at(e->keys, e->nkeys, in, len, 0, 0, out, out_len);
  if (rc != KV_EDECRYPT) return rc;
  if (!kv__fernet_looks_like_token(in, len)) {
    if (e->allow_plaintext) {
      if ((*out = kv_strndup(in, len)) == NULL) return KV_ENOMEM;
      *out_len = len;
      return 0;
    }
    return kv__errbuf(errbuf, errbuf_len, KV_EDECRYPT,
                      "the stored value (%zu bytes) is not a Fernet token: "
                      "not encrypted? (allow_plaintext=true reads such "
                      "values as they are)",
                      len);
  }
  return kv__errbuf(errbuf, errbuf_len, KV_EDECRYPT,
                    "the stored Fernet token (%zu bytes) does not verify "
                    "with any of the %zu configured key%s: tampered, or "
                    "encrypted with another key",
                    len, e->nkeys, e->nkeys == 1 ? "" : "s");
}

static const kv__codec_t enc_codec = {enc_encode, enc_decode};

static kv_store_methods_t enc_methods;
static uv_once_t enc_once = UV_ONCE_INIT;

static void enc_init(void) {
  kv__codec_methods_init(&enc_methods, "encryption", sizeof(enc_t));
}

static void keys_free(kv__fernet_key_t *keys, size_t n) {
  for (size_t i = 0; i < n; i++)
    kv__fernet_key_wipe(&keys[i]);
  kv_free(keys);
}

static void enc_free(kv_wrap_t *w) {
  enc_t *e = (enc_t *)w;
  keys_free(e->keys, e->nkeys);
  e->keys = NULL;
}

/* Decode one key into k; the detail names the key by its role only. */
static int key_in(const char *text, size_t len, const char *what, size_t idx,
                  kv__fernet_key_t *k, char *errbuf, size_t errbuf_len) {
  if (kv__fernet_key_decode(text, len, k) == 0) return 0;
  if (idx)
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "%s #%zu is not a Fernet key (44 characters of URL-safe "
                      "base64 encoding 32 bytes; %zu characters given)",
                      what, idx, len);
  return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                    "%s is not a Fernet key (44 characters of URL-safe "
                    "base64 encoding 32 bytes; %zu characters given)",
                    what, len);
}

static int enc_create(kv_store_t *inner, const kv_wrap_encryption_opts_t *o,
                      kv_store_t **out, char *errbuf, size_t errbuf_len) {
  static const kv_wrap_encryption_opts_t dflt;
  kv__fernet_key_t *keys;
  size_t nkeys;
  kv_wrap_t *w;
  enc_t *e;
  int err = 0;
  if (out == NULL) return KV_EINVAL;
  *out = NULL;
  if (o == NULL) o = &dflt;
  if (inner == NULL)
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL, "no inner store");
  if ((o->key != NULL) == (o->source != NULL || o->salt != NULL))
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "encryption needs either a key or source material and "
                      "a salt (exactly one of the two)");
  if (o->source != NULL &&
      (o->source[0] == '\0' || o->salt == NULL || o->salt[0] == '\0'))
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "key derivation needs non-empty source material and "
                      "salt");
  if (o->nold_keys > 0 && o->old_keys == NULL)
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "%zu old keys announced, none given", o->nold_keys);
  nkeys = 1 + o->nold_keys;
  if ((keys = kv_calloc(nkeys, sizeof *keys)) == NULL)
    return kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
  if (o->key != NULL) {
    err = key_in(o->key, strlen(o->key), "the key", 0, &keys[0], errbuf,
                 errbuf_len);
  } else {
    char derived[KV_FERNET_KEY_SIZE];
    err = kv__fernet_derive(o->source, strlen(o->source), o->salt,
                            strlen(o->salt), derived);
    if (err == 0)
      err = kv__fernet_key_decode(derived, strlen(derived), &keys[0]);
    OPENSSL_cleanse(derived, sizeof derived);
    if (err) kv__errbuf(errbuf, errbuf_len, err, "key derivation failed");
  }
  for (size_t i = 0; err == 0 && i < o->nold_keys; i++) {
    const char *k = o->old_keys[i];
    err = key_in(k ? k : "", k ? strlen(k) : 0, "old key", i + 1, &keys[i + 1],
                 errbuf, errbuf_len);
  }
  for (size_t i = 0; err == 0 && i < nkeys; i++)
    if ((err = kv__fernet_key_cache(&keys[i])) != 0)
      kv__errbuf(errbuf, errbuf_len, err, "OpenSSL could not set up a key");
  uv_once(&enc_once, enc_init);
  if (err == 0 && (err = kv_wrap_create(inner, &enc_methods, o->borrow, &w)))
    kv__errbuf(errbuf, errbuf_len, err,
               err == KV_ECLOSED ? "the inner store is closing"
                                 : "cannot create the wrapper");
  if (err) {
    keys_free(keys, nkeys);
    return err;
  }
  e = (enc_t *)w;
  e->c.codec = &enc_codec;
  e->c.missing_on_error = o->missing_on_error;
  e->c.missing_error = KV_EDECRYPT;
  e->keys = keys;
  e->nkeys = nkeys;
  e->allow_plaintext = o->allow_plaintext;
  w->on_free = enc_free;
  *out = &w->base;
  return 0;
}

int kv_wrap_encryption(kv_store_t *inner, const kv_wrap_encryption_opts_t *o,
                       kv_store_t **out) {
  return enc_create(inner, o, out, NULL, 0);
}

/* ---- From options text (kv_wrap_by_name, --wrap, wrap://) -------------- */

/* Split "K1+K2+..." into a NULL-terminated array of pointers into `text`
 * (modified in place). */
static const char **split_keys(char *text, size_t *n) {
  size_t cap = 1;
  const char **v;
  for (const char *p = text; *p; p++)
    cap += *p == '+';
  if ((v = kv_calloc(cap + 1, sizeof *v)) == NULL) return NULL;
  *n = 0;
  for (char *p = text;;) {
    char *plus = strchr(p, '+');
    v[(*n)++] = p;
    if (plus == NULL) break;
    *plus = '\0';
    p = plus + 1;
  }
  return v;
}

static void wipe_opts(kv_url_t *u) {
  for (size_t i = 0; i < u->nparams; i++)
    if (u->params[i].value)
      OPENSSL_cleanse(u->params[i].value, strlen(u->params[i].value));
  kv_wrap_opts_free(u);
}

int kv__wrap_encryption_from_options(const char *options, kv_store_t *inner,
                                     kv_store_t **out, char *errbuf,
                                     size_t errbuf_len) {
  static const char *const known[] = {
      "key",  "old_keys",        "key_env",          "source",
      "salt", "allow_plaintext", "missing_on_error", NULL};
  kv_wrap_encryption_opts_t o;
  kv_url_t u;
  char tmp[512], *env_copy = NULL, *old_copy = NULL;
  size_t env_len = 0, old_len = 0;
  const char **keys = NULL, **old = NULL;
  const char *key, *key_env, *old_text;
  size_t nkeys = 0, nold = 0;
  int err;
  *out = NULL;
  memset(&o, 0, sizeof o);
  /* The parser's messages quote the whole text, keys included: not passed
   * on. */
  if ((err = kv_wrap_opts_parse(options, &u, tmp, sizeof tmp)) != 0)
    return kv__errbuf(errbuf, errbuf_len, err,
                      "malformed encryption options (an empty or repeated "
                      "option, or a bad %%-escape; the text is not shown: it "
                      "may hold key material)");
  if ((err = kv_wrap_opts_check(&u, "encryption", known, errbuf, errbuf_len)) !=
          0 ||
      (err = kv_url_param_bool(&u, "allow_plaintext", 0, &o.allow_plaintext,
                               errbuf, errbuf_len)) != 0 ||
      (err = kv_url_param_bool(&u, "missing_on_error", 0, &o.missing_on_error,
                               errbuf, errbuf_len)) != 0)
    goto done;
  key = kv_url_param(&u, "key");
  key_env = kv_url_param(&u, "key_env");
  old_text = kv_url_param(&u, "old_keys");
  o.source = kv_url_param(&u, "source");
  o.salt = kv_url_param(&u, "salt");
  if ((key != NULL) + (key_env != NULL) +
          (o.source != NULL || o.salt != NULL) !=
      1) {
    err = kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                     "encryption needs exactly one of key=, key_env= or "
                     "source= with salt=");
    goto done;
  }
  if (key_env != NULL) {
    const char *v = getenv(key_env);
    if (v == NULL || v[0] == '\0') {
      err =
          kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                     "environment variable '%s' (key_env) is not set", key_env);
      goto done;
    }
    /* It may hold "K1+K2...": the first encrypts, all decrypt. */
    env_len = strlen(v);
    if ((env_copy = kv_strndup(v, env_len)) == NULL ||
        (keys = split_keys(env_copy, &nkeys)) == NULL) {
      err = kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
      goto done;
    }
    o.key = keys[0];
  } else {
    o.key = key;
  }
  if (old_text != NULL && old_text[0] != '\0') {
    old_len = strlen(old_text);
    if ((old_copy = kv_strndup(old_text, old_len)) == NULL ||
        (old = split_keys(old_copy, &nold)) == NULL) {
      err = kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
      goto done;
    }
  }
  /* Old keys: those after the first in key_env, then old_keys. */
  if (nkeys > 1 || nold > 0) {
    const char **all = kv_calloc(nkeys + nold + 1, sizeof *all);
    size_t n = 0;
    if (all == NULL) {
      err = kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
      goto done;
    }
    for (size_t i = 1; i < nkeys; i++)
      all[n++] = keys[i];
    for (size_t i = 0; i < nold; i++)
      all[n++] = old[i];
    o.old_keys = all;
    o.nold_keys = n;
  }
  err = enc_create(inner, &o, out, errbuf, errbuf_len);
  kv_free((void *)(uintptr_t)o.old_keys);

done:
  if (env_copy) OPENSSL_cleanse(env_copy, env_len);
  if (old_copy) OPENSSL_cleanse(old_copy, old_len);
  kv_free(env_copy);
  kv_free(old_copy);
  kv_free(keys);
  kv_free(old);
  wipe_opts(&u);
  return err;
}
