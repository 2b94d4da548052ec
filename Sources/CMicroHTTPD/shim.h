#ifndef CMICROHTTPD_SHIM_H
#define CMICROHTTPD_SHIM_H
#include <stdarg.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <microhttpd.h>
// MHD_start_daemon and MHD_get_*_info are variadic; the HTTPServer module adds the static inline
// wrappers it needs here.
#endif
