// Included at the end of every core source file. The core is built by CMake
// without PostgreSQL's include path, and this makes the rule explicit: if a
// core header ever pulls postgres.h in, the build stops here.
#pragma once

#ifdef POSTGRES_H
#error "src/core must stay PostgreSQL-free: a core header included postgres.h"
#endif
