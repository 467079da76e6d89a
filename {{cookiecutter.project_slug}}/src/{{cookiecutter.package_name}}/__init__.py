{{ (cookiecutter.project_name ~ ": " ~ cookiecutter.description) | quoted }}

__version__ = "0.1.0"
# the template release this service was generated from, or last updated to (README,
# "Staying up to date"); .cruft.json records the same with the template commit
TEMPLATE_VERSION = "{{ cookiecutter._template_version }}"
