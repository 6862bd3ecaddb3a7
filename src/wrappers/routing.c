/* routing and collection-routing: the store for each operation is chosen
 * by collection (a function, or a fixed map); the inner store takes the
 * rest. collections() walks every store and lists from each only the
 * collections routed to it; destroy and cull go to every store. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wrappers/wrappers.h"

typedef struct {
  kv_wrap_t w;
  kv_store_t **stores; /* [0] is the inner store, then the routes */
  size_t n;
  kv_wrap_route_fn route;
  void *route_data;
  char **colls; /* collection-routing: stores[i + 1] serves colls[i] */
} route_t;

static size_t pick(route_t *r, const char *coll) {
  if (r->colls) {
    for (size_t i = 0; i + 1 < r->n; i++)
      if (strcmp(r->colls[i], coll) == 0) return i + 1;
    return 0;
  }
  if (r->route) {
    kv_store_t *s = r->route(coll, r->route_data);
    for (size_t i = 1; s && i < r->n; i++)
      if (r->stores[i] == s) return i;
  }
  return 0;
}

static void done_cb(kv_wrap_req_t *wr) {
  kv_wrap_finish(wr);
}

static int route_op(kv_store_t *s, kv_req_t *req) {
  route_t *r = (route_t *)s;
  kv_wrap_req_t *wr = kv_wrap_req_new(s, req, 0);
  int err;
  if (wr == NULL) return kv_req_set_error(req, KV_ENOMEM, "out of memory");
  err = kv_wrap_submit(wr, r->stores[pick(r, req->in.collection)], done_cb);
  if (err < 0) return kv_wrap_refuse(wr, err);
  return 0;
}

/* ---- Every store in turn: collections(), destroy, cull -------------------
 * wr->data holds the index of the store being asked (as a pointer-sized
 * integer); for collections() the cursor is "<index>:<inner cursor>". */

typedef struct {
  size_t idx;
  size_t count; /* cull: summed */
  char *inner_cursor;
} walk_t;

#define WALK(wr) ((walk_t *)kv_wrap_req_extra(wr))

static void walk_step(kv_wrap_req_t *wr);

static void walk_submit(kv_wrap_req_t *wr) {
  route_t *r = (route_t *)wr->w;
  walk_t *k = WALK(wr);
  wr->in.cursor = k->inner_cursor;
  if (wr->op == KV_OP_COLLECTIONS)
    wr->in.limit = wr->outer->in.limit - wr->outer->nnames;
  if (kv_wrap_submit(wr, r->stores[k->idx], walk_step) < 0) {
    kv_free(k->inner_cursor);
    k->inner_cursor = NULL;
    kv_wrap_finish(wr);
  }
}

static void walk_step(kv_wrap_req_t *wr) {
  route_t *r = (route_t *)wr->w;
  walk_t *k = WALK(wr);
  kv_req_t *in = &wr->inner, *o = wr->outer;
  kv_free(k->inner_cursor);
  k->inner_cursor = NULL;
  if (in->status < 0) {
    kv_wrap_finish(wr);
    return;
  }
  if (wr->op == KV_OP_COLLECTIONS) {
    for (size_t i = 0; i < in->nnames; i++) {
      if (pick(r, in->names[i].base) != k->idx) continue;
      if (kv_req_add_name(o, in->names[i].base, in->names[i].len) != 0) {
        kv_req_set_error(o, KV_ENOMEM, "out of memory");
        kv_wrap_complete(wr, KV_ENOMEM);
        kv_wrap_req_free(wr);
        return;
      }
    }
    if (in->cursor) {
      k->inner_cursor = in->cursor;
      in->cursor = NULL;
    } else {
      k->idx++;
    }
    if (k->idx < r->n && o->nnames < o->in.limit) { /* fill the page */
      walk_submit(wr);
      return;
    }
    if (k->idx < r->n) {
      size_t cl = k->inner_cursor ? strlen(k->inner_cursor) : 0;
      char *cur = kv_malloc(cl + 24);
      if (cur == NULL) {
        kv_free(k->inner_cursor);
        kv_req_set_error(o, KV_ENOMEM, "out of memory");
        kv_wrap_complete(wr, KV_ENOMEM);
        kv_wrap_req_free(wr);
        return;
      }
      snprintf(cur, cl + 24, "%zu:%s", k->idx,
               k->inner_cursor ? k->inner_cursor : "");
      o->cursor = cur;
      kv_free(k->inner_cursor);
      k->inner_cursor = NULL;
    }
    kv_wrap_complete(wr, 0);
    kv_wrap_req_free(wr);
    return;
  }
  k->count += in->count;
  if (++k->idx < r->n) {
    walk_submit(wr);
    return;
  }
  o->count = k->count;
  kv_wrap_complete(wr, 0);
  kv_wrap_req_free(wr);
}

static int route_walk(kv_store_t *s, kv_req_t *req) {
  route_t *r = (route_t *)s;
  kv_wrap_req_t *wr = kv_wrap_req_new(s, req, sizeof(walk_t));
  walk_t *k;
  if (wr == NULL) return kv_req_set_error(req, KV_ENOMEM, "out of memory");
  k = WALK(wr);
  if (req->op == KV_OP_COLLECTIONS && req->in.cursor) {
    const char *c = req->in.cursor, *colon = strchr(c, ':');
    char *end;
    unsigned long long idx = strtoull(c, &end, 10);
    if (colon == NULL || end != colon || idx >= r->n) {
      kv_wrap_req_free(wr);
      return kv_req_set_error(req, KV_EINVAL, "invalid cursor '%s'", c);
    }
    k->idx = (size_t)idx;
    if (colon[1]) {
      k->inner_cursor = kv_strndup(colon + 1, strlen(colon + 1));
      if (k->inner_cursor == NULL) {
        kv_wrap_req_free(wr);
        return kv_req_set_error(req, KV_ENOMEM, "out of memory");
      }
    }
  }
  (void)r;
  walk_submit(wr);
  return 0;
}

/* ---- Construction ------------------------------------------------------- */

static void route_free(kv_wrap_t *w) {
  route_t *r = (route_t *)w;
  for (size_t i = 0; r->colls && i + 1 < r->n; i++)
    kv_free(r->colls[i]);
  kv_free(r->colls);
  kv_free(r->stores);
}

static kv_store_methods_t route_methods, croute_methods;
static uv_once_t route_once = UV_ONCE_INIT;

static void methods_for(kv_store_methods_t *m, const char *name) {
  kv_wrap_methods_init(m, name, sizeof(route_t));
  m->get = m->ttl = m->put = m->del = route_op;
  m->get_many = m->ttl_many = m->put_many = m->delete_many = route_op;
  m->keys = m->destroy_collection = route_op;
  m->put_if_absent = m->cas = m->incr = m->take = route_op;
  m->collections = m->destroy = m->cull = route_walk;
  m->ctl_ex = kv_wrap_ctl_forward;
}

static void route_init(void) {
  methods_for(&route_methods, "routing");
  methods_for(&croute_methods, "collection-routing");
}

static int make(kv_store_t *inner, const kv_wrap_routing_opts_t *o, int by_name,
                kv_store_t **out) {
  kv_wrap_t *w;
  route_t *r;
  int err;
  *out = NULL;
  if (o == NULL || (o->nstores > 0 && o->stores == NULL) ||
      (by_name ? o->collections == NULL && o->nstores > 0 : o->route == NULL))
    return KV_EINVAL;
  for (size_t i = 0; i < o->nstores; i++) {
    if (o->stores[i] == NULL || o->stores[i] == inner ||
        o->stores[i]->loop != inner->loop)
      return KV_EINVAL;
    for (size_t j = 0; j < i; j++)
      if (o->stores[j] == o->stores[i]) return KV_EINVAL;
    if (by_name && (o->collections[i] == NULL || o->collections[i][0] == 0))
      return KV_EINVAL;
  }
  uv_once(&route_once, route_init);
  err = kv_wrap_create(inner, by_name ? &croute_methods : &route_methods,
                       o->borrow, &w);
  if (err) return err;
  r = (route_t *)w;
  w->on_free = route_free;
  r->n = o->nstores + 1;
  r->stores = kv_malloc(r->n * sizeof *r->stores);
  if (r->stores == NULL) goto nomem;
  r->stores[0] = inner;
  r->route = o->route;
  r->route_data = o->route_data;
  if (by_name) {
    r->colls = kv_calloc(o->nstores ? o->nstores : 1, sizeof *r->colls);
    if (r->colls == NULL) goto nomem;
  }
  for (size_t i = 0; i < o->nstores; i++) {
    r->stores[i + 1] = o->stores[i];
    w->base.caps &= kv_store_caps(o->stores[i]);
    if (by_name) {
      r->colls[i] = kv_strndup(o->collections[i], strlen(o->collections[i]));
      if (r->colls[i] == NULL) goto nomem;
    }
  }
  for (size_t i = 0; i < o->nstores; i++)
    if (kv_wrap_add_store(w, o->stores[i], !o->borrow_stores) != 0) goto nomem;
  *out = &w->base;
  return 0;
nomem:
  kv__wrap_abort(w);
  return KV_ENOMEM;
}

int kv_wrap_routing(kv_store_t *inner, const kv_wrap_routing_opts_t *o,
                    kv_store_t **out) {
  return make(inner, o, 0, out);
}

int kv_wrap_collection_routing(kv_store_t *inner,
                               const kv_wrap_routing_opts_t *o,
                               kv_store_t **out) {
  return make(inner, o, 1, out);
}

/* collection-routing:COLLECTION=URL,... (collection names percent-encoded
 * where needed). */
KV__WRAP_FROM_OPTIONS(collection_routing) {
  kv_wrap_routing_opts_t o = {0};
  kv_store_t **stores = NULL;
  const char **colls = NULL;
  kv_url_t opts;
  size_t n = 0;
  int err = kv_wrap_opts_parse(options, &opts, errbuf, errbuf_len);
  if (err) return err;
  if (opts.nparams == 0) {
    kv_wrap_opts_free(&opts);
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "wrapper 'collection-routing' needs at least one "
                      "COLLECTION=URL option");
  }
  stores = kv_calloc(opts.nparams, sizeof *stores);
  colls = kv_calloc(opts.nparams, sizeof *colls);
  if (stores == NULL || colls == NULL) {
    err = kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
    goto done;
  }
  for (n = 0; n < opts.nparams; n++) {
    char sub[400];
    kv_url_param_t *p = &opts.params[n];
    char why[512];
    if (kv__check_name("collection", p->name, strlen(p->name), why,
                       sizeof why) != 0) {
      err = kv__errbuf(errbuf, errbuf_len, KV_EINVAL, "collection-routing: %s",
                       why);
      goto done;
    }
    err = kv_open_ex(inner->loop, p->value, &stores[n], sub, sizeof sub);
    if (err) {
      kv__errbuf(errbuf, errbuf_len, err,
                 "collection-routing, collection '%s': %s", p->name, sub);
      goto done;
    }
    colls[n] = p->name;
  }
  o.stores = stores;
  o.nstores = n;
  o.collections = colls;
  err = kv_wrap_collection_routing(inner, &o, out);
  if (err)
    kv__errbuf(errbuf, errbuf_len, err, "collection-routing: %s",
               kv_strerror(err));
done:
  if (err)
    for (size_t i = 0; i < n; i++)
      kv_store_close(stores[i], NULL);
  kv_free(stores);
  kv_free(colls);
  kv_wrap_opts_free(&opts);
  return err;
}
