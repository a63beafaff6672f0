#ifndef CNUMPYIO_ZLIB_SHIM_H
#define CNUMPYIO_ZLIB_SHIM_H
#include <zlib.h>
#endif
