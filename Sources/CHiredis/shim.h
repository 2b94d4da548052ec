#ifndef CHIREDIS_SHIM_H
#define CHIREDIS_SHIM_H
// redisCommand is variadic and does not import: use redisCommandArgv / redisAppendCommandArgv.
#include <hiredis/hiredis.h>
#endif
