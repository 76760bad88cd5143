"""Keyword options of output decorators are checked when the class is decorated: one that neither
the format's reader nor its writer takes, or one that belongs elsewhere, is a one-line error."""

from __future__ import annotations

import pytest

import luisy
from luisy.errors import UnknownOptionError


def _decorate(decorator, base=luisy.Task):
    @decorator
    class Gray(base):
        def get_folder_name(self):
            return "gray"

    return Gray


@pytest.mark.parametrize("decorator, base, message", [
    (luisy.directory_output(format="json", on_error="skip"), luisy.DirectoryTask,
     "@directory_output on Gray: on_error is not an option of @directory_output; it is a class attribute of the "
     "DirectoryTask: write on_error = 'skip' in the class body of Gray"),
    # parquet's reader takes any keyword (for pyarrow): a DirectoryTask setting must not vanish into it
    (luisy.directory_output(format="parquet", processes=4), luisy.DirectoryTask,
     "@directory_output on Gray: processes is not an option of @directory_output; it is a class attribute of the "
     "DirectoryTask: write processes = 4 in the class body of Gray"),
    (luisy.directory_output(format="npy", pattern="*.png"), luisy.DirectoryTask,
     "@directory_output on Gray: pattern is not an option of @directory_output; it is an option of "
     "@luisy.directory_input"),
    (luisy.directory_input(pattern="*.png", format="npy"), luisy.ExternalTask,
     "@directory_input on Gray: format is not an option of @directory_input; it is an option of "
     "@luisy.directory_output"),
    (luisy.csv_output(sepp=";"), luisy.Task,
     "@csv_output on Gray: unknown option 'sepp' (not a keyword of the csv format's reader or writer); "
     "did you mean 'sep'?"),
    (luisy.directory_output(format="npy", allow_pickle=True), luisy.DirectoryTask,
     "@directory_output on Gray: unknown option 'allow_pickle' (not a keyword of the npy format's reader or "
     "writer); it takes none"),
    (luisy.auto_filename(excl_param=["a"]), luisy.Task,
     "@auto_filename on Gray: unknown option 'excl_param' (not a keyword of @auto_filename); did you mean "
     "'excl_params'?"),
    (luisy.directory_input(patern="*.png"), luisy.ExternalTask,
     "@directory_input on Gray: unknown option 'patern' (not a keyword of @directory_input); did you mean "
     "'pattern'?"),
])
def test_a_wrong_option_is_named_with_where_it_belongs(decorator, base, message):
    with pytest.raises(UnknownOptionError) as raised:
        _decorate(decorator, base)
    assert raised.value.format_message().replace("_decorate.<locals>.", "") == message
    assert isinstance(raised.value, TypeError), "as Python's own unexpected keyword argument"


@pytest.mark.parametrize("decorator", [
    luisy.csv_output(sep=";", usecols=["a"], index=True),  # reader-only and writer-only keywords
    luisy.hdf_output(format="table"),  # a format keyword that is also directory_output's own
    luisy.parquet_output(compression="gzip", use_threads=False),  # pyarrow's, through **kwargs
    luisy.json_output(indent=2, sort_keys=True),
    luisy.directory_output(format="csv", sep=";"),
    luisy.pickle_output(protocol=4),
])
def test_options_the_reader_or_writer_takes_are_accepted(decorator):
    _decorate(decorator)

