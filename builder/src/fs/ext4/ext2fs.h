/* The parts of libext2fs (e2fsprogs) and libcom_err that piimg binds to; see build.rs. */
#include <ext2fs/ext2_fs.h>
#include <ext2fs/ext2fs.h>
#include <et/com_err.h>
#include <ext2fs/ext2_err.h>
