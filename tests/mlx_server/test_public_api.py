"""The package's public surface is what `__all__` says, and each name exists."""

import mlx_server


def test_it_exports_exactly_the_documented_names() -> None:
    assert sorted(mlx_server.__all__) == [
        "APIError",
        "ContextOverflow",
        "InvalidRequest",
        "ModelNotFound",
        "Overloaded",
        "ServerSettings",
        "create_app",
    ]
    for name in mlx_server.__all__:
        assert getattr(mlx_server, name) is not None


def test_it_derives_every_client_error_from_one_base() -> None:
    for error in (mlx_server.InvalidRequest, mlx_server.ModelNotFound, mlx_server.Overloaded):
        assert issubclass(error, mlx_server.APIError)
    assert issubclass(mlx_server.ContextOverflow, mlx_server.InvalidRequest)
