/* kvio version macros. */
#ifndef KVIO_VERSION_H
#define KVIO_VERSION_H

#define KV_VERSION_MAJOR 0
#define KV_VERSION_MINOR 1
#define KV_VERSION_PATCH 0
#define KV_VERSION_HEX \
  ((KV_VERSION_MAJOR << 16) | (KV_VERSION_MINOR << 8) | (KV_VERSION_PATCH))

#endif
