"""Griffe extension for the API reference: a package's re-exports are public.

keras_simclr's subpackages expose their public names by importing them in
`__init__.py` (`from keras_simclr.layers.random_resized_crop import
RandomResizedCrop`) rather than by listing them in `__all__`. Griffe treats
imported names as private unless `__all__` lists them, so this extension
marks as public every name that a package imports from inside itself,
except modules and names starting with an underscore. A package that
defines `__all__` keeps it as the rule.
"""

import griffe


def _mark(module):
    for member in module.members.values():
        if not member.is_alias and member.is_module:
            _mark(member)
    if not module.is_init_module or module.exports:
        return
    prefix = module.path + "."
    for name, member in module.members.items():
        if not member.is_alias or name.startswith("_"):
            continue
        if not member.target_path.startswith(prefix):
            continue
        try:
            target = member.final_target
        except (griffe.AliasResolutionError, griffe.CyclicAliasError):
            continue
        if not target.is_module:
            member.public = True


class PublicReexports(griffe.Extension):
    def on_package(self, *, pkg, **kwargs):
        _mark(pkg)
