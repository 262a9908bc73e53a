; Rayonix MX340-HS at MFX, 2x2 binned (1920 x 1920, 88.54 um), for peaknet-serve's tests

photon_energy = /LCLS/photon_energy_eV
clen = 0.130
adu_per_photon = 1
res = 11294.3
flag_morethan = 65534   ; saturated

data = /entry_1/data_1/data
dim0 = %
dim1 = ss
dim2 = fs

; mask_file = rayonix-mask.h5
; mask = /data/data
; mask_good = 0x1
; mask_bad = 0x0

rayonix/min_fs = 0
rayonix/max_fs = 1919
rayonix/min_ss = 0
rayonix/max_ss = 1919
rayonix/corner_x = -962.31
rayonix/corner_y = -955.87
rayonix/fs = +1.000000x +0.000000y
rayonix/ss = +0.000000x +1.000000y

bad_beamstop/min_x = -25
bad_beamstop/max_x = 25
bad_beamstop/min_y = -25
bad_beamstop/max_y = 400   ; the beam stop's arm

