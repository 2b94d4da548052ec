#ifndef CEVENTFD_SHIM_H
#define CEVENTFD_SHIM_H
// eventfd is not in Swift's Glibc module.
#include <sys/eventfd.h>
#include <poll.h>
#endif
