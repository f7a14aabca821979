"""Camera math (``studio.data.cameras``) against hand-computed cases.

Convention: z up, OpenGL camera space (x right, y up, the camera looks along -z), azimuth measured
from +x toward +y, ``p = d (cos e cos a, cos e sin a, sin e)``; pixel (i, j) = (column, row), row 0
at the top of the image.
"""

from __future__ import annotations

import math

import pytest
import torch

from studio.data import cameras as cam

SQRT3 = math.sqrt(3.0)


def _c2w_at(position, center=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> torch.Tensor:
    return cam.look_at(torch.tensor([position]), torch.tensor([center]), torch.tensor([up]))


def _random_inputs(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random positions, centres, tilted up vectors and fovy (rad) for ``n`` cameras."""
    gen = torch.Generator().manual_seed(seed)
    direction = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen), dim=-1)
    return {
        "position": direction * (1 + 2 * torch.rand(n, 1, generator=gen)),
        "center": 0.3 * torch.randn(n, 3, generator=gen),
        "up": torch.tensor([0.0, 0.0, 1.0]) + 0.3 * torch.randn(n, 3, generator=gen),
        "fovy": (30 + 60 * torch.rand(n, generator=gen)) * cam.DEG,
    }


def _random_cameras(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``c2w [n,4,4]`` and fovy for :func:`_random_inputs`."""
    x = _random_inputs(n, seed)
    return cam.look_at(x["position"], x["center"], x["up"]), x["fovy"]


# -- positions -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("elevation_deg", "azimuth_deg", "distance", "expected"),
    [
        (0, 0, 2.0, (2.0, 0.0, 0.0)),
        (0, 90, 2.0, (0.0, 2.0, 0.0)),
        (0, 180, 1.0, (-1.0, 0.0, 0.0)),
        (0, -90, 1.0, (0.0, -1.0, 0.0)),
        (90, 37, 1.5, (0.0, 0.0, 1.5)),
        (-90, 0, 1.0, (0.0, 0.0, -1.0)),
        (30, 45, 2.0, (SQRT3 / math.sqrt(2), SQRT3 / math.sqrt(2), 1.0)),
    ],
)
def test_spherical_to_position_hand_cases(elevation_deg, azimuth_deg, distance, expected):
    position = cam.spherical_to_position(
        torch.tensor([elevation_deg * cam.DEG]),
        torch.tensor([azimuth_deg * cam.DEG]),
        torch.tensor([distance]),
    )
    assert position.shape == (1, 3)
    assert torch.allclose(position[0], torch.tensor(expected), atol=1e-6)


def test_focal_from_fovy():
    # fovy 90 deg: tan(45) = 1, so the focal length is half the image height.
    assert torch.allclose(cam.focal_from_fovy(64, torch.tensor([90 * cam.DEG])), torch.tensor(32.0))
    # fovy 60 deg: f = 0.5 H / tan 30 = 0.5 H sqrt(3).
    f = cam.focal_from_fovy(10, torch.tensor([60 * cam.DEG, 90 * cam.DEG]))
    assert torch.allclose(f, torch.tensor([5 * SQRT3, 5.0]), atol=1e-5)


# -- pixel directions ------------------------------------------------------------------------------
def test_ray_directions_pixel_centres():
    height, width, focal = 4, 6, 2.5
    d = cam.ray_directions(height, width, focal)
    assert d.shape == (height, width, 3) and d.dtype == torch.float32
    for j in range(height):
        for i in range(width):
            expected = torch.tensor(
                [(i + 0.5 - width / 2) / focal, -(j + 0.5 - height / 2) / focal, -1.0]
            )
            assert torch.allclose(d[j, i], expected, atol=1e-6), (i, j)
    # Row 0 is the top of the image (+y), column 0 the left (-x).
    assert d[0, 0, 0] < 0 < d[0, 0, 1]
    assert d[-1, -1, 0] > 0 > d[-1, -1, 1]
    # The image is symmetric about the optical axis.
    assert torch.allclose(d.mean(dim=(0, 1)), torch.tensor([0.0, 0.0, -1.0]), atol=1e-6)


def test_ray_directions_odd_size_has_the_axis_at_the_centre_pixel():
    d = cam.ray_directions(5, 7, 1.0)
    assert torch.equal(d[2, 3], torch.tensor([0.0, 0.0, -1.0]))


# -- look_at ---------------------------------------------------------------------------------------
def test_look_at_hand_case_on_the_x_axis():
    # p = (2,0,0) looking at the origin with z up: lookat = -x, right = lookat x up = +y,
    # up = right x lookat = +z, back = -lookat = +x.
    c2w = _c2w_at((2.0, 0.0, 0.0))
    expected = torch.tensor(
        [
            [0.0, 0.0, 1.0, 2.0],
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    assert c2w.shape == (1, 4, 4)
    assert torch.allclose(c2w[0], expected, atol=1e-7)


def test_look_at_hand_case_on_the_y_axis_above():
    # p = (0, 2, 2): lookat = (0,-1,-1)/sqrt2, right = lookat x z = (-1,0,0),
    # up = right x lookat = (0,-1,1)/sqrt2, back = (0,1,1)/sqrt2.
    c2w = _c2w_at((0.0, 2.0, 2.0))[0]
    s = 1 / math.sqrt(2)
    assert torch.allclose(c2w[:3, 0], torch.tensor([-1.0, 0.0, 0.0]), atol=1e-6)
    assert torch.allclose(c2w[:3, 1], torch.tensor([0.0, -s, s]), atol=1e-6)
    assert torch.allclose(c2w[:3, 2], torch.tensor([0.0, s, s]), atol=1e-6)
    assert torch.allclose(c2w[:3, 3], torch.tensor([0.0, 2.0, 2.0]))


def test_look_at_is_a_right_handed_rigid_transform_looking_at_the_centre():
    c2w, _ = _random_cameras(64)
    rot = c2w[:, :3, :3]
    eye = torch.eye(3).expand(64, 3, 3)
    assert torch.allclose(rot.transpose(1, 2) @ rot, eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(64), atol=1e-5)
    assert torch.equal(c2w[:, 3], torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(64, 4))
    # -z in camera space (the optical axis) points from the position towards the centre.
    x = _random_inputs(64)
    assert torch.allclose(c2w[:, :3, 3], x["position"])
    to_center = torch.nn.functional.normalize(x["center"] - x["position"], dim=-1)
    assert torch.allclose(-c2w[:, :3, 2], to_center, atol=1e-5)


def test_look_at_keeps_the_up_vector_in_the_camera_up_half_plane():
    c2w, _ = _random_cameras(64)
    # The requested up vector has no component along "right" and a positive one along camera up.
    up = _random_inputs(64)["up"]
    assert torch.allclose((up * c2w[:, :3, 0]).sum(-1), torch.zeros(64), atol=1e-5)
    assert ((up * c2w[:, :3, 1]).sum(-1) > 0).all()


# -- projection ------------------------------------------------------------------------------------
def test_projection_matrix_entries():
    fovy = torch.tensor([60 * cam.DEG, 90 * cam.DEG])
    proj = cam.projection_matrix(fovy, 1.5)
    n, f = 0.01, 100.0
    tan30 = 1 / SQRT3
    expected0 = torch.zeros(4, 4)
    expected0[0, 0] = 1 / (tan30 * 1.5)
    expected0[1, 1] = -1 / tan30  # y flipped: image row 0 at the top
    expected0[2, 2] = -(f + n) / (f - n)
    expected0[2, 3] = -2 * f * n / (f - n)
    expected0[3, 2] = -1.0
    assert proj.shape == (2, 4, 4)
    assert torch.allclose(proj[0], expected0, atol=1e-5)
    assert torch.allclose(proj[1, 0, 0], torch.tensor(1 / 1.5))
    assert torch.allclose(proj[1, 1, 1], torch.tensor(-1.0))
    # Non-default clipping planes.
    proj = cam.projection_matrix(fovy[:1], 1.0, near=0.1, far=1000.0)
    assert torch.allclose(proj[0, 2, 2], torch.tensor(-1000.1 / 999.9))
    assert torch.allclose(proj[0, 2, 3], torch.tensor(-200.0 / 999.9))


def test_projection_maps_near_and_far_planes_to_minus_one_and_one():
    proj = cam.projection_matrix(torch.tensor([50 * cam.DEG]), 1.0)[0].double()
    for depth, ndc_z in ((0.01, -1.0), (100.0, 1.0)):
        clip = proj @ torch.tensor([0.0, 0.0, -depth, 1.0], dtype=torch.float64)
        assert abs(clip[2] / clip[3] - ndc_z) < 1e-5


def test_mvp_equals_proj_times_inverse_c2w():
    c2w, fovy = _random_cameras(32)
    proj = cam.projection_matrix(fovy, 1.25)
    mvp = cam.mvp_matrix(c2w, proj)
    assert mvp.shape == (32, 4, 4)
    assert torch.allclose(mvp, proj @ torch.linalg.inv(c2w), atol=1e-5)


def test_mvp_hand_case():
    # Camera at (2,0,0) looking at the origin, fovy 60, aspect 1.5.
    c2w = _c2w_at((2.0, 0.0, 0.0))
    proj = cam.projection_matrix(torch.tensor([60 * cam.DEG]), 1.5)
    mvp = cam.mvp_matrix(c2w, proj)[0]

    def ndc(point):
        clip = mvp @ torch.tensor([*point, 1.0])
        return clip[:3] / clip[3]

    n, f = 0.01, 100.0
    depth_ndc = lambda z: ((f + n) * z - 2 * f * n) / ((f - n) * z)  # noqa: E731
    # The origin is 2 in front of the camera, at the image centre.
    assert torch.allclose(ndc((0.0, 0.0, 0.0)), torch.tensor([0.0, 0.0, depth_ndc(2.0)]), atol=1e-6)
    # (0, 0.5, 0.25) is camera-space (0.5, 0.25, -2): ndc x = 0.5 / (2 tan30 * 1.5) = sqrt3/6,
    # ndc y = -0.25 / (2 tan30) = -sqrt3/8 (y flipped: above the axis is towards row 0 = ndc -1).
    expected = torch.tensor([SQRT3 / 6, -SQRT3 / 8, depth_ndc(2.0)])
    assert torch.allclose(ndc((0.0, 0.5, 0.25)), expected, atol=1e-6)


# -- world rays ------------------------------------------------------------------------------------
def test_world_rays_rotate_directions_and_share_the_origin():
    c2w, _ = _random_cameras(3)
    dirs = torch.randn(3, 4, 5, 3, generator=torch.Generator().manual_seed(1))
    rays_o, rays_d = cam.world_rays(dirs, c2w, normalize=False)
    assert rays_o.shape == rays_d.shape == (3, 4, 5, 3)
    expected = torch.einsum("brc,bhwc->bhwr", c2w[:, :3, :3], dirs)
    assert torch.allclose(rays_d, expected, atol=1e-6)
    assert torch.equal(rays_o, c2w[:, None, None, :3, 3].expand(3, 4, 5, 3))
    _, unit = cam.world_rays(dirs, c2w, normalize=True)
    assert torch.allclose(unit, torch.nn.functional.normalize(expected, dim=-1), atol=1e-6)
    assert torch.allclose(unit.norm(dim=-1), torch.ones(3, 4, 5), atol=1e-6)


def test_rays_project_back_to_their_pixel_centres():
    """Each pixel's ray, pushed through mvp, lands on that pixel's centre in NDC."""
    height, width = 5, 8
    c2w, fovy = _random_cameras(4, seed=3)
    focal = cam.focal_from_fovy(height, fovy)
    dirs = cam.ray_directions(height, width, 1.0)[None].repeat(4, 1, 1, 1)
    dirs[..., :2] /= focal[:, None, None, None]
    rays_o, rays_d = cam.world_rays(dirs, c2w)
    mvp = cam.mvp_matrix(c2w, cam.projection_matrix(fovy, width / height))
    points = rays_o + 0.7 * rays_d
    clip = torch.einsum("brc,bhwc->bhwr", mvp[:, :, :3], points) + mvp[:, None, None, :, 3]
    ndc = clip[..., :2] / clip[..., 3:]
    j, i = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    expected = torch.stack([(i + 0.5) / width * 2 - 1, (j + 0.5) / height * 2 - 1], dim=-1)
    assert torch.allclose(ndc, expected.expand(4, height, width, 2).float(), atol=1e-4)


# -- robustness: poles, dtype, device --------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_look_at_straight_down_and_up_is_a_rotation(dtype):
    """Looking along the up axis has no "right" from lookat x up; the +x-side limit is used."""

    def t(values):
        return torch.tensor(values, dtype=dtype)

    position = t([[0.0, 0.0, 2.0], [0.0, 0.0, -2.0], [1e-9, 0.0, 3.0], [1e-3, 0.0, 2.0]])
    c2w = cam.look_at(position, t([[0.0, 0.0, 0.0]]), t([[0.0, 0.0, 1.0]]))
    rot = c2w[:, :3, :3]
    assert c2w.dtype == dtype
    eye = torch.eye(3, dtype=dtype).expand(4, 3, 3)
    assert torch.allclose(rot.transpose(1, 2) @ rot, eye, atol=1e-6)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(4, dtype=dtype), atol=1e-6)
    # Rotation matrices (columns right, up, back). Above: right +y, up -x, back +z, the limit
    # of azimuth 0, elevation -> 90 deg; a camera just off the pole (last row) agrees.
    above = t([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    for index in (0, 2):
        assert torch.allclose(rot[index], above, atol=1e-6)
    assert torch.allclose(rot[3], above, atol=1e-3)
    # Below: right +y, up +x, back -z.
    assert torch.allclose(
        rot[1], t([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]), atol=1e-6
    )


def test_look_at_with_up_along_x_when_degenerate():
    c2w = cam.look_at(
        torch.tensor([[2.0, 0.0, 0.0]]), torch.zeros(1, 3), torch.tensor([[1.0, 0, 0]])
    )
    rot = c2w[0, :3, :3]
    assert torch.allclose(rot.T @ rot, torch.eye(3), atol=1e-6)
    assert torch.allclose(torch.linalg.det(rot), torch.tensor(1.0))
    assert torch.allclose(rot[:, 2], torch.tensor([1.0, 0.0, 0.0]))


def test_float64_is_kept_throughout():
    x = {k: v.double() for k, v in _random_inputs(4).items()}
    c2w = cam.look_at(x["position"], x["center"], x["up"])
    proj = cam.projection_matrix(x["fovy"], 1.0)
    mvp = cam.mvp_matrix(c2w, proj)
    dirs = cam.ray_directions(3, 2, 1.5, dtype=torch.float64)
    rays_o, rays_d = cam.world_rays(dirs[None].expand(4, 3, 2, 3), c2w)
    for tensor in (c2w, proj, mvp, dirs, rays_o, rays_d):
        assert tensor.dtype == torch.float64
    assert torch.allclose(mvp, proj @ torch.linalg.inv(c2w), atol=1e-12)


def test_outputs_stay_on_the_inputs_device():
    meta = torch.device("meta")
    position = torch.empty(2, 3, device=meta)
    c2w = cam.look_at(position, torch.empty(2, 3, device=meta), torch.empty(2, 3, device=meta))
    proj = cam.projection_matrix(torch.empty(2, device=meta), 1.0)
    dirs = cam.ray_directions(4, 4, 1.0, device=meta)
    rays_o, rays_d = cam.world_rays(dirs[None].expand(2, 4, 4, 3), c2w)
    for tensor in (c2w, proj, cam.mvp_matrix(c2w, proj), dirs, rays_o, rays_d):
        assert tensor.device == meta
