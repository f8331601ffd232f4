#ifndef SWITCHYARD_CYAML_SHIM_H
#define SWITCHYARD_CYAML_SHIM_H
#include <yaml.h>
#endif
